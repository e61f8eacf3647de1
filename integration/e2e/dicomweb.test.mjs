// End-to-end, as an imaging viewer would: read the ImagingStudies through the
// gateway's FHIR API (fhir-kit-client), take the WADO-RS / WADO-URI URLs the
// gateway injected, and fetch the images through them with dicomweb-client.
// Every byte is checked against the files make-studies.sh wrote (manifest SHA-256).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  makeClient, toBuffer, sha256, instances, tagValue, retrieveFrames, retrieveSeriesBytes, retrieveStudyBytes,
  fetchMultipart,
} from './lib/dicomweb.mjs';
import {
  FHIR_SERVER, GATEWAY, GW_DICOMWEB, DIRECT_FHIR, EXT_WADO_RS, EXT_WADO_URI, ARCHIVE_HOSTS,
  manifest, byScenario, skip, fhirClient, ext, get,
} from './lib/env.mjs';

const dw = makeClient(GW_DICOMWEB);
const all = instances(manifest);
const bySop = new Map(all.map((i) => [i.sopInstanceUID, i]));
/** sop -> {rs, uri}; series uid -> series URL (from the FHIR answers) */
const urls = new Map();
const seriesUrls = new Map();

/** Split a gateway WADO-RS URL into UIDs, checking it is on the gateway's DICOMweb base. */
function parseRsUrl(u) {
  assert.ok(u.startsWith(GW_DICOMWEB + '/'), `${u} is on the gateway base ${GW_DICOMWEB}`);
  const m = /^\/studies\/([0-9.]+)\/series\/([0-9.]+)(?:\/instances\/([0-9.]+))?$/.exec(u.slice(GW_DICOMWEB.length));
  assert.ok(m, `${u} is a WADO-RS series or instance URL`);
  return { studyInstanceUID: m[1], seriesInstanceUID: m[2], sopInstanceUID: m[3] };
}

/** Pixel data of a single-frame manifest file (the last element: 64*64*2 bytes per frame). */
function pixelData(inst) {
  const file = readFileSync(inst.path);
  return file.subarray(file.length - 8192 * inst.frames);
}

/** Every string value anywhere in a JSON value. */
function strings(v, out = []) {
  if (typeof v === 'string') out.push(v);
  else if (Array.isArray(v)) v.forEach((x) => strings(x, out));
  else if (v && typeof v === 'object') Object.values(v).forEach((x) => strings(x, out));
  return out;
}
function assertNoArchiveAddress(json, what) {
  const text = JSON.stringify(json);
  for (const h of ARCHIVE_HOSTS) assert.ok(!text.includes(h), `${what}: an answer mentions the archive address ${h}`);
  for (const s of strings(json)) {
    if (/^https?:\/\//.test(s)) assert.ok(s.startsWith(GW_DICOMWEB + '/'), `${what}: URL ${s} is not on the gateway`);
  }
}

before(async () => {
  if (skip) return;
  const fhir = fhirClient();
  for (const st of manifest.studies) {
    const is = await fhir.read({ resourceType: 'ImagingStudy', id: `study-${st.scenario.toLowerCase()}` });
    for (const se of is.series) {
      const [s] = ext(se, EXT_WADO_RS);
      if (s) seriesUrls.set(se.uid, s.valueUrl);
      for (const i of se.instance) {
        urls.set(i.uid, { rs: ext(i, EXT_WADO_RS)[0]?.valueUrl, uri: ext(i, EXT_WADO_URI)[0]?.valueUrl });
      }
    }
  }
});

test(`[${FHIR_SERVER}] WADO-RS: every instance retrieved through its FHIR URL is byte-identical (SHA-256)`, { skip }, async () => {
  assert.equal(urls.size, 15);
  for (const inst of all) {
    const u = urls.get(inst.sopInstanceUID)?.rs;
    assert.ok(u, `${inst.file}: has a WADO-RS URL`);
    const uids = parseRsUrl(u);
    assert.deepEqual(uids, { studyInstanceUID: inst.studyInstanceUID, seriesInstanceUID: inst.seriesInstanceUID, sopInstanceUID: inst.sopInstanceUID });
    const part = toBuffer(await dw.retrieveInstance(uids));
    assert.equal(part.toString('latin1', 128, 132), 'DICM', `${inst.file}: a DICOM Part 10 file`);
    assert.equal(sha256(part), inst.sha256, `${inst.file} (${inst.scenario}, archive ${inst.archive}): SHA-256`);
  }
});

test(`[${FHIR_SERVER}] WADO-RS series metadata: complete, no archive address, BulkDataURI works through the gateway`, { skip }, async (t) => {
  for (const st of manifest.studies) {
    for (const se of st.series) {
      await t.test(`${st.scenario} series ${se.number} (archive ${se.archive})`, async () => {
        const uids = parseRsUrl(seriesUrls.get(se.seriesInstanceUID));
        const meta = await dw.retrieveSeriesMetadata(uids);
        assert.deepEqual(meta.map((m) => tagValue(m, '00080018')).sort(), se.instances.map((i) => i.sopInstanceUID).sort());
        assertNoArchiveAddress(meta, `metadata of ${se.seriesInstanceUID}`);
        // PixelData comes as a BulkDataURI on the gateway; fetch one and compare with the file.
        const m0 = meta.find((m) => tagValue(m, '00080018') === se.instances[0].sopInstanceUID);
        const bulk = m0['7FE00010']?.BulkDataURI;
        assert.ok(bulk, 'PixelData has a BulkDataURI');
        assert.ok(bulk.startsWith(GW_DICOMWEB + '/'), `BulkDataURI on the gateway: ${bulk}`);
        const data = toBuffer(await dw.retrieveBulkData({ BulkDataURI: bulk }).then((r) => (Array.isArray(r) ? r[0] : r)));
        assert.ok(data.equals(pixelData(bySop.get(se.instances[0].sopInstanceUID))), 'bulk data equals the pixel data of the file');
      });
    }
  }
});

test(`[${FHIR_SERVER}] WADO-RS frames: frame 1 of every series, frame 2 of the multi-frame instance`, { skip }, async () => {
  for (const st of manifest.studies) {
    for (const se of st.series) {
      const inst = bySop.get(se.instances[0].sopInstanceUID);
      const uids = parseRsUrl(urls.get(inst.sopInstanceUID).rs);
      const [f1] = await retrieveFrames(dw, uids.studyInstanceUID, uids.seriesInstanceUID, uids.sopInstanceUID, 1);
      assert.ok(f1.equals(pixelData(inst).subarray(0, 8192)), `${inst.file}: frame 1 equals the file's pixel data`);
    }
  }
  const mf = all.find((i) => i.frames > 1);
  const uids = parseRsUrl(urls.get(mf.sopInstanceUID).rs);
  const [f2] = await retrieveFrames(dw, uids.studyInstanceUID, uids.seriesInstanceUID, uids.sopInstanceUID, 2);
  assert.ok(f2.equals(pixelData(mf).subarray(8192)), 'frame 2 of the multi-frame instance');
});

test(`[${FHIR_SERVER}] WADO-RS rendered: JPEG by default, PNG on request, from both archives`, { skip }, async () => {
  for (const arch of ['a', 'b']) {
    const inst = all.find((i) => i.archive === arch);
    const uids = parseRsUrl(urls.get(inst.sopInstanceUID).rs);
    // dicomweb-client returns the image, or a one-element array of it, depending on the path it takes
    const one = (x) => toBuffer(Array.isArray(x) ? x[0] : x);
    const jpeg = one(await dw.retrieveInstanceRendered({ ...uids, mediaTypes: [{ mediaType: 'image/jpeg' }] }));
    assert.deepEqual([...jpeg.subarray(0, 3)], [0xff, 0xd8, 0xff], `archive ${arch}: JPEG magic bytes`);
    const png = one(await dw.retrieveInstanceRendered({ ...uids, mediaTypes: [{ mediaType: 'image/png' }] }));
    assert.equal(png.toString('latin1', 0, 8), '\x89PNG\r\n\x1a\n', `archive ${arch}: PNG magic bytes`);
  }
  // and a plain browser-style GET of the instance URL + /rendered
  const r = await get(`${urls.get(all[0].sopInstanceUID).rs}/rendered`);
  assert.equal(r.status, 200);
  assert.deepEqual([...r.buf.subarray(0, 3)], [0xff, 0xd8, 0xff]);
});

test(`[${FHIR_SERVER}] WADO-URI: every injected WADO-URI URL returns the uploaded file`, { skip }, async () => {
  let n = 0;
  for (const inst of all) {
    const u = urls.get(inst.sopInstanceUID)?.uri;
    if (byScenario[inst.scenario].fhir.studyEndpoints.includes('dicom-wado-uri')) assert.ok(u, `${inst.file}: WADO-URI URL`);
    if (!u) continue;
    assert.ok(u.startsWith(`${GATEWAY}/wado?`), `on the gateway: ${u}`);
    const r = await get(u);
    assert.equal(r.status, 200, `${u}: ${r.text.slice(0, 200)}`);
    assert.equal(sha256(r.buf), inst.sha256, `${inst.file}: WADO-URI bytes`);
    n++;
  }
  assert.equal(n, 2, 'S4 has two instances with WADO-URI');
});

test(`[${FHIR_SERVER}] QIDO-RS /wado-rs/studies: the studies of both archives, merged and de-duplicated`, { skip }, async () => {
  const studies = await dw.searchForStudies();
  const got = studies.map((s) => tagValue(s, '0020000D'));
  assert.deepEqual([...got].sort(), manifest.studies.map((s) => s.studyInstanceUID).sort(), 'S1-S4 once each (S2 lives in both)');
  assertNoArchiveAddress(studies, 'QIDO-RS studies');
  for (const s of studies) {
    assert.equal(tagValue(s, '00081190'), `${GW_DICOMWEB}/studies/${tagValue(s, '0020000D')}`, 'RetrieveURL on the gateway');
  }
  const page = await dw.searchForStudies({ queryParams: { limit: 2, offset: 1 } });
  assert.deepEqual(page.map((s) => tagValue(s, '0020000D')), got.slice(1, 3), 'limit/offset apply to the merged list');
  const s3 = await dw.searchForStudies({ queryParams: { StudyInstanceUID: byScenario.S3.studyInstanceUID } });
  assert.deepEqual(s3.map((s) => tagValue(s, '0020000D')), [byScenario.S3.studyInstanceUID], 'a query by UID finds the study in archive b');
});

test(`[${FHIR_SERVER}] QIDO-RS /wado-rs/series and /instances across archives`, { skip }, async () => {
  const s2 = byScenario.S2;
  const series = await dw.searchForSeries({ queryParams: { StudyInstanceUID: s2.studyInstanceUID } });
  assert.deepEqual(series.map((s) => tagValue(s, '0020000E')).sort(), s2.series.map((s) => s.seriesInstanceUID).sort());
  assertNoArchiveAddress(series, 'QIDO-RS series');
  const inst = await dw.searchForInstances({ queryParams: { StudyInstanceUID: s2.studyInstanceUID } });
  assert.equal(inst.length, 4, 'the four instances of S2, from both archives');
  assertNoArchiveAddress(inst, 'QIDO-RS instances');
});

test(`[${FHIR_SERVER}] S2 split study: each series is retrieved from its own archive through the gateway`, { skip }, async () => {
  const s2 = byScenario.S2;
  assert.deepEqual(s2.series.map((s) => s.archive), ['a', 'b']);
  for (const se of s2.series) {
    const uids = parseRsUrl(seriesUrls.get(se.seriesInstanceUID));
    const parts = await retrieveSeriesBytes(dw, uids.studyInstanceUID, uids.seriesInstanceUID);
    assert.deepEqual(parts.map(sha256).sort(), se.instances.map((i) => i.sha256).sort(), `series ${se.number} (archive ${se.archive})`);
    // the multipart answer's part headers: one application/dicom part per instance
    const raw = await fetchMultipart(seriesUrls.get(se.seriesInstanceUID));
    assert.equal(raw.status, 200);
    assert.equal(raw.parts.length, se.instances.length);
    for (const p of raw.parts) assert.match(p.headers['content-type'] || '', /^application\/dicom/);
  }
});

test(`[${FHIR_SERVER}] S2 split study: study-level retrieve and metadata merge both archives`, { skip }, async () => {
  const s2 = byScenario.S2;
  const want = s2.series.flatMap((se) => se.instances);
  const meta = await dw.retrieveStudyMetadata({ studyInstanceUID: s2.studyInstanceUID });
  assert.deepEqual(meta.map((m) => tagValue(m, '00080018')).sort(), want.map((i) => i.sopInstanceUID).sort(),
    'GET /wado-rs/studies/<S2>/metadata lists the instances of both archives');
  assertNoArchiveAddress(meta, 'study metadata');
  const parts = await retrieveStudyBytes(dw, s2.studyInstanceUID);
  assert.deepEqual(parts.map(sha256).sort(), want.map((i) => i.sha256).sort(), 'GET /wado-rs/studies/<S2> returns all four files');
});

test(`[${FHIR_SERVER}] study-level retrieve of single-archive studies (S1 on a, S3 on b)`, { skip }, async () => {
  for (const sc of ['S1', 'S3']) {
    const st = byScenario[sc];
    const parts = await retrieveStudyBytes(dw, st.studyInstanceUID);
    assert.deepEqual(parts.map(sha256).sort(), st.series.flatMap((s) => s.instances.map((i) => i.sha256)).sort(), sc);
  }
});

test(`[${FHIR_SERVER}] STOW-RS through the gateway stores into store_archive (orthanc-a) only`, { skip }, async () => {
  // A new instance: the first S1 file with its UIDs moved from study <root>.1 to <root>.8
  // (same length, so the file stays valid): study .8, series .8.1, SOP .8.1.1.
  const root = manifest.uidRoot;
  const src = all.find((i) => i.scenario === 'S1');
  const from = Buffer.from(`${root}.1`); const to = Buffer.from(`${root}.8`);
  const file = Buffer.from(readFileSync(src.path));
  for (let at = file.indexOf(from); at >= 0; at = file.indexOf(from, at + to.length)) to.copy(file, at);
  const study = `${root}.8`;
  const orthanc = {
    a: process.env.ORTHANC_A_URL || 'http://127.0.0.1:18042',
    b: process.env.ORTHANC_B_URL || 'http://127.0.0.1:18043',
  };
  const dicomweb = {
    a: process.env.ORTHANC_A_DICOMWEB || `${orthanc.a}/dicom-web`,
    b: process.env.ORTHANC_B_DICOMWEB || `${orthanc.b}/pacs/dicom-web`,
  };
  try {
    await dw.storeInstances({ datasets: [file.buffer.slice(file.byteOffset, file.byteOffset + file.length)] });
    // checked on the archives themselves (the gateway would ask FHIR, which does not know this study)
    const inA = await get(`${dicomweb.a}/studies?StudyInstanceUID=${study}`);
    assert.equal(inA.status, 200);
    assert.deepEqual(inA.json.map((s) => tagValue(s, '0020000D')), [study], 'stored in orthanc-a');
    const inB = await get(`${dicomweb.b}/studies?StudyInstanceUID=${study}`);
    assert.deepEqual(inB.json, [], 'not in orthanc-b');
    const back = await get(`${dicomweb.a}/studies/${study}/series/${study}.1/instances/${study}.1.1`, { headers: { Accept: 'multipart/related; type="application/dicom"' } });
    assert.equal(back.status, 200);
    assert.ok(back.buf.includes(file.subarray(132, 400)), 'the stored file is the one sent');
  } finally {
    // remove it again so that the archives hold exactly the manifest (Orthanc REST API)
    const ids = await get(`${orthanc.a}/tools/lookup`, { method: 'POST', body: study });
    for (const r of ids.json || []) if (r.Type === 'Study') await fetch(`${orthanc.a}${r.Path}`, { method: 'DELETE' });
    // and the ImagingStudy that register_imaging_study made of it (register.test.mjs checks that one)
    const made = await get(`${DIRECT_FHIR}/ImagingStudy?identifier=${encodeURIComponent(`urn:dicom:uid|urn:oid:${study}`)}`, { headers: { Accept: 'application/fhir+json' } });
    for (const e of made.json?.entry || []) await fetch(`${DIRECT_FHIR}/ImagingStudy/${e.resource.id}`, { method: 'DELETE' });
  }
});
