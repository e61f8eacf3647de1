// End-to-end against HAPI FHIR JPA serving FHIR STU3 (integration/run-e2e.sh hapi-stu3:
// HAPI_FHIR_VERSION=dstu3, the gateway with fhir_version stu3, data seeded by
// seed-fhir.mjs --fhir-version stu3 THROUGH the gateway).
//
// STU3 as the specification writes it: ImagingStudy.uid, series.uid and
// series.instance.uid are oids (urn:oid:<uid>), the study has no urn:dicom:uid
// identifier, its patient is ImagingStudy.patient; Endpoint.connectionType is a
// Coding of http://hl7.org/fhir/endpoint-connection-type with the required
// payloadType. A study with series endpoints also has a study endpoint, which the
// series endpoints override (S2's second series lives in archive b only).
//
// Checked as a client would: fhir-kit-client searches ImagingStudy through the gateway,
// every series and instance carries its URLs with bare UIDs, and those URLs, and
// dicomweb-client through /wado-rs, retrieve bytes equal (SHA-256) to the stored files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  FHIR_SERVER, GATEWAY, GW_DICOMWEB, GW_WADO_URI, DIRECT_FHIR, EXT_WADO_RS, EXT_WADO_URI,
  manifest, byScenario, skip, fhirClient, ext, get,
} from '../lib/env.mjs';
import { makeClient, sha256, fetchMultipart, retrieveSeriesBytes, retrieveStudyBytes } from '../lib/dicomweb.mjs';

const client = fhirClient();
const oid = (uid) => `urn:oid:${uid}`;
const bare = (v) => v.replace(/^urn:oid:/, '');
const studyId = (st) => `study-${st.scenario.toLowerCase()}`;

/** Every ImagingStudy of the manifest, searched through the gateway with fhir-kit-client. */
async function searchAll() {
  const bundle = await client.search({ resourceType: 'ImagingStudy', searchParams: { _count: 100 } });
  assert.equal(bundle.resourceType, 'Bundle');
  const byId = Object.fromEntries((bundle.entry || []).map((e) => [e.resource.id, e.resource]));
  for (const st of manifest.studies) assert.ok(byId[studyId(st)], `${studyId(st)} in the search answer`);
  return byId;
}

/** The injected URLs of one STU3 ImagingStudy, checked against the manifest. */
function checkURLs(is, st) {
  const uid = st.studyInstanceUID;
  const hasWadoUri = st.fhir.studyEndpoints.includes('dicom-wado-uri');
  const urls = [];
  assert.equal(is.uid, oid(uid), `${is.id}: STU3 uid kept as the server has it`);
  assert.equal(is.series.length, st.series.length);
  for (const mse of st.series) {
    const se = is.series.find((s) => s.uid === oid(mse.seriesInstanceUID));
    assert.ok(se, `${is.id}: series ${oid(mse.seriesInstanceUID)} present as an oid`);
    const seURL = `${GW_DICOMWEB}/studies/${uid}/series/${mse.seriesInstanceUID}`;
    const rs = ext(se, EXT_WADO_RS);
    assert.equal(rs.length, 1, `${is.id} series ${se.uid}: one wado-rs extension, got ${JSON.stringify(se.extension)}`);
    assert.equal(rs[0].valueUrl, seURL, 'series URL with bare UIDs');
    urls.push({ kind: 'series', url: rs[0].valueUrl, want: mse.instances.map((i) => i.sha256) });
    assert.equal(se.instance.length, mse.instances.length);
    for (const mi of mse.instances) {
      const inst = se.instance.find((i) => i.uid === oid(mi.sopInstanceUID));
      assert.ok(inst, `instance ${oid(mi.sopInstanceUID)} present as an oid`);
      const irs = ext(inst, EXT_WADO_RS);
      assert.equal(irs.length, 1, `instance ${inst.uid}: one wado-rs extension`);
      assert.equal(irs[0].valueUrl, `${seURL}/instances/${mi.sopInstanceUID}`);
      urls.push({ kind: 'instance', url: irs[0].valueUrl, want: [mi.sha256] });
      const iuri = ext(inst, EXT_WADO_URI);
      if (hasWadoUri) {
        assert.equal(iuri.length, 1, `instance ${inst.uid}: one wado-uri extension`);
        assert.equal(iuri[0].valueUrl, `${GW_WADO_URI}?requestType=WADO&studyUID=${uid}&seriesUID=${mse.seriesInstanceUID}` +
          `&objectUID=${mi.sopInstanceUID}&contentType=application/dicom`);
        urls.push({ kind: 'wado-uri', url: iuri[0].valueUrl, want: [mi.sha256] });
      } else {
        assert.equal(iuri.length, 0, `instance ${inst.uid}: no wado-uri extension`);
      }
    }
  }
  for (const u of urls) assert.ok(!u.url.includes('urn:oid'), `no urn:oid in ${u.url}`);
  return urls;
}

test(`[${FHIR_SERVER}] the FHIR server speaks STU3 and holds STU3-shaped data (read directly)`, { skip }, async () => {
  const md = await get(`${DIRECT_FHIR}/metadata`, { headers: { Accept: 'application/fhir+json' } });
  assert.equal(md.status, 200);
  assert.equal(md.json.fhirVersion, '3.0.2', 'HAPI runs DSTU3');
  const names = md.json.rest[0].resource.find((r) => r.type === 'ImagingStudy').searchParam.map((p) => p.name);
  assert.ok(names.includes('study'), 'STU3 ImagingStudy has the search parameter study (ImagingStudy.uid)');
  for (const st of manifest.studies) {
    const r = await get(`${DIRECT_FHIR}/ImagingStudy/${studyId(st)}`, { headers: { Accept: 'application/fhir+json' } });
    assert.equal(r.status, 200, studyId(st));
    const is = r.json;
    assert.equal(is.uid, oid(st.studyInstanceUID));
    assert.equal(is.identifier, undefined, 'no identifier: the UID is in uid only');
    assert.equal(is.patient.reference, `Patient/${st.patient.id}`);
    assert.ok(is.series.every((se) => se.uid.startsWith('urn:oid:') && se.instance.every((i) => i.uid.startsWith('urn:oid:'))),
      'series and instance uids are oids');
    assert.ok(is.endpoint?.length > 0, 'a study endpoint');
    // The R4 look-up (identifier=urn:dicom:uid|...) cannot find STU3 data: routing must use study=.
    const byIdentifier = await get(`${DIRECT_FHIR}/ImagingStudy?identifier=${encodeURIComponent(
      `urn:dicom:uid|${oid(st.studyInstanceUID)},urn:dicom:uid|${st.studyInstanceUID}`)}`, { headers: { Accept: 'application/fhir+json' } });
    assert.equal(byIdentifier.json.total, 0, `${studyId(st)}: not found by identifier`);
  }
  const ep = await get(`${DIRECT_FHIR}/Endpoint/ep-b-wado-rs`, { headers: { Accept: 'application/fhir+json' } });
  assert.deepEqual(ep.json.connectionType, { system: 'http://hl7.org/fhir/endpoint-connection-type', code: 'dicom-wado-rs' });
  assert.ok(ep.json.payloadType.length > 0, 'payloadType (required in STU3)');
});

test(`[${FHIR_SERVER}] fhir-kit-client search through the gateway: every series and instance gets its URLs, with bare UIDs`, { skip }, async () => {
  const byId = await searchAll();
  let n = 0;
  for (const st of manifest.studies) n += checkURLs(byId[studyId(st)], st).length;
  const want = manifest.studies.reduce((k, st) => k + st.series.length +
    st.series.reduce((m, se) => m + se.instances.length * (st.fhir.studyEndpoints.includes('dicom-wado-uri') ? 2 : 1), 0), 0);
  assert.equal(n, want, 'URLs injected');
  // STU3's own search parameters pass through: study (ImagingStudy.uid), series, uid (instance), patient.
  const s2 = byScenario.S2;
  for (const [param, value] of [
    ['study', oid(s2.studyInstanceUID)],
    ['series', oid(s2.series[1].seriesInstanceUID)],
    ['uid', oid(s2.series[1].instances[0].sopInstanceUID)],
    ['patient', s2.patient.id],
  ]) {
    const b = await client.search({ resourceType: 'ImagingStudy', searchParams: { [param]: value, _include: 'ImagingStudy:endpoint' } });
    const studies = (b.entry || []).filter((e) => e.resource.resourceType === 'ImagingStudy').map((e) => e.resource);
    assert.deepEqual(studies.map((s) => s.id), ['study-s2'], `${param}=${value}`);
    checkURLs(studies[0], s2);
    assert.ok((b.entry || []).some((e) => e.resource.resourceType === 'Endpoint' && e.resource.id === 'ep-b-wado-rs'), 'the Endpoints are _included');
  }
});

test(`[${FHIR_SERVER}] the injected URLs retrieve through the gateway the stored bytes (SHA-256)`, { skip }, async () => {
  const byId = await searchAll();
  let checked = 0;
  for (const st of manifest.studies) {
    for (const u of checkURLs(byId[studyId(st)], st)) {
      assert.ok(u.url.startsWith(GATEWAY + '/'), `${u.url} on the gateway`);
      if (u.kind === 'wado-uri') {
        const r = await get(u.url);
        assert.equal(r.status, 200, u.url);
        assert.equal(sha256(r.buf), u.want[0], `${u.url}: bytes`);
      } else {
        const r = await fetchMultipart(u.url);
        assert.equal(r.status, 200, `${u.url}: ${r.body?.toString().slice(0, 200)}`);
        assert.deepEqual(r.parts.map((p) => sha256(p.body)).sort(), [...u.want].sort(), `${u.url}: bytes`);
      }
      checked++;
    }
  }
  assert.ok(checked > 0);
});

test(`[${FHIR_SERVER}] /wado-rs routes STU3 studies by study and series UID (dicomweb-client)`, { skip }, async () => {
  const dw = makeClient(GW_DICOMWEB);
  for (const st of manifest.studies) {
    const parts = await retrieveStudyBytes(dw, st.studyInstanceUID);
    assert.deepEqual(parts.map(sha256).sort(), st.series.flatMap((se) => se.instances.map((i) => i.sha256)).sort(),
      `${st.scenario}: study retrieve`);
    for (const se of st.series) {
      const sp = await retrieveSeriesBytes(dw, st.studyInstanceUID, se.seriesInstanceUID);
      assert.deepEqual(sp.map(sha256).sort(), se.instances.map((i) => i.sha256).sort(),
        `${st.scenario} series ${se.number} (archive ${se.archive})`);
    }
  }
  // S2's second series is in archive b only; its series endpoint overrides the study's (archive a).
  const s2 = byScenario.S2;
  const inB = s2.series.find((se) => se.archive === 'b');
  assert.ok(inB, 'S2 has a series in archive b');
  const meta = await get(`${GW_DICOMWEB}/studies/${s2.studyInstanceUID}/series/${inB.seriesInstanceUID}/metadata`,
    { headers: { Accept: 'application/dicom+json' } });
  assert.equal(meta.status, 200);
  assert.deepEqual(meta.json.map((m) => m['00080018'].Value[0]).sort(), inB.instances.map((i) => i.sopInstanceUID).sort());
  // A study FHIR does not know: 404 (the look-up asked FHIR and found nothing).
  const unknown = await get(`${GW_DICOMWEB}/studies/${manifest.uidRoot}.999/series`, { headers: { Accept: 'application/dicom+json' } });
  assert.equal(unknown.status, 404, unknown.text);
});
