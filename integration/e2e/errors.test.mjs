// End-to-end: the gateway's error answers (contract: "A UID that is not a DICOM UID
// gets 400; a study that the FHIR server does not know gets 404 ... Error bodies are
// JSON with a message") and its promise never to send a request to an address that
// is not a configured archive, whatever the FHIR data says.
//
// The "trap" is a listener of this test process on 127.0.0.1:$E2E_TRAP_PORT (18099);
// FHIR Endpoints written through the gateway point there (see lib/env.mjs
// foreignResources). It must never get a request.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  FHIR_SERVER, GATEWAY, GW_FHIR, GW_DICOMWEB, GW_WADO_URI, EXT_WADO_RS, EXT_WADO_URI,
  manifest, byScenario, skip, get, putResource, foreignResources, startTrap, fhirClient,
} from './lib/env.mjs';

let trap;
const foreign = foreignResources();
const root = manifest.uidRoot;
const s1 = byScenario.S1;
const s1se = s1?.series[0];
const s1i = s1se?.instances[0];

before(async () => {
  if (skip) return;
  trap = await startTrap();
  for (const r of foreign.resources) await putResource(GW_FHIR, r);
});
after(async () => { await trap?.close(); });

/** The answer is a gateway error: that status, JSON, with a non-empty message. */
function assertJsonError(r, status, what) {
  assert.equal(r.status, status, `${what}: status (body ${r.text.slice(0, 200)})`);
  assert.match(r.contentType, /^application\/json/, `${what}: JSON error body`);
  assert.equal(typeof r.json?.message, 'string', `${what}: has a message`);
  assert.ok(r.json.message.length > 5, `${what}: message says something`);
}
/** Not something an Orthanc said (its /system, /studies lists, /tools ...). */
function assertNotFromArchive(r, what) {
  assert.ok(!/"(DicomAet|ApiVersion|DatabaseVersion|PluginsEnabled)"/.test(r.text), `${what}: an Orthanc answer leaked: ${r.text.slice(0, 200)}`);
}

test(`[${FHIR_SERVER}] malformed UIDs: 400 with a JSON message`, { skip }, async (t) => {
  const long = '1.' + '2'.repeat(70);
  const cases = {
    'study UID with letters': `${GW_DICOMWEB}/studies/abc/metadata`,
    'series UID with letters': `${GW_DICOMWEB}/studies/${s1.studyInstanceUID}/series/1.2.x/metadata`,
    'SOP UID with letters': `${GW_DICOMWEB}/studies/${s1.studyInstanceUID}/series/${s1se.seriesInstanceUID}/instances/1.2.3a`,
    'study UID longer than 64 characters': `${GW_DICOMWEB}/studies/${long}`,
    'study UID with a quote': `${GW_DICOMWEB}/studies/1.2.3%22/series`,
    'WADO-URI studyUID with letters': `${GW_WADO_URI}?requestType=WADO&studyUID=abc&seriesUID=${s1se.seriesInstanceUID}&objectUID=${s1i.sopInstanceUID}&contentType=application/dicom`,
    'WADO-URI objectUID too long': `${GW_WADO_URI}?requestType=WADO&studyUID=${s1.studyInstanceUID}&seriesUID=${s1se.seriesInstanceUID}&objectUID=${long}&contentType=application/dicom`,
  };
  for (const [what, url] of Object.entries(cases)) {
    await t.test(what, async () => assertJsonError(await get(url), 400, what));
  }
});

test(`[${FHIR_SERVER}] a study the FHIR server does not know: 404 with a JSON message`, { skip }, async (t) => {
  const u = `${root}.4040`;
  const cases = {
    'WADO-RS study retrieve': `${GW_DICOMWEB}/studies/${u}`,
    'WADO-RS study metadata': `${GW_DICOMWEB}/studies/${u}/metadata`,
    'WADO-RS instance': `${GW_DICOMWEB}/studies/${u}/series/${u}.1/instances/${u}.1.1`,
    'WADO-RS rendered': `${GW_DICOMWEB}/studies/${u}/series/${u}.1/instances/${u}.1.1/rendered`,
    'WADO-URI': `${GW_WADO_URI}?requestType=WADO&studyUID=${u}&seriesUID=${u}.1&objectUID=${u}.1.1&contentType=application/dicom`,
  };
  for (const [what, url] of Object.entries(cases)) {
    await t.test(what, async () => assertJsonError(await get(url), 404, what));
  }
});

test(`[${FHIR_SERVER}] path traversal never reaches an archive`, { skip }, async (t) => {
  const inst = `${GW_DICOMWEB}/studies/${s1.studyInstanceUID}/series/${s1se.seriesInstanceUID}/instances/${s1i.sopInstanceUID}`;
  // encoded dots and slashes stay inside one path segment: that segment is not a UID -> 400
  const encoded = {
    'encoded ../ in the SOP UID': `${GW_DICOMWEB}/studies/${s1.studyInstanceUID}/series/${s1se.seriesInstanceUID}/instances/..%2F..%2F..%2F..%2Fsystem`,
    'encoded %2e%2e segments': `${GW_DICOMWEB}/studies/${s1.studyInstanceUID}/series/${s1se.seriesInstanceUID}/%2e%2e/%2e%2e/%2e%2e/system`,
    'encoded ../ after frames/': `${inst}/frames/..%2F..%2F..%2F..%2F..%2F..%2Fsystem`,
  };
  for (const [what, url] of Object.entries(encoded)) {
    await t.test(what, async () => {
      const r = await get(url);
      assertJsonError(r, 400, what);
      assertNotFromArchive(r, what);
    });
  }
  // An encoded ../ that climbs out of /studies/<uid>: the gateway decodes and cleans
  // the path, which then names no DICOMweb resource: 404 (or 400), JSON, not proxied.
  await t.test('encoded ../ in the series UID, out of the study', async () => {
    const r = await get(`${GW_DICOMWEB}/studies/${s1.studyInstanceUID}/series/..%2F..%2F..%2Ftools%2Ffind`);
    assert.ok(r.status === 400 || r.status === 404, `status ${r.status}`);
    assert.match(r.contentType, /^application\/json/);
    assertNotFromArchive(r, 'tools/find');
  });
  // literal ../ (sent as-is: node's fetch would resolve it, so use node:http)
  const http = await import('node:http');
  const raw = (path) => new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: new URL(GATEWAY).port, path, method: 'GET' }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => { const text = Buffer.concat(chunks).toString(); resolve({ status: res.statusCode, text, contentType: res.headers['content-type'] || '' }); });
    });
    req.on('error', reject);
    req.end();
  });
  const literal = [
    `/wado-rs/studies/${s1.studyInstanceUID}/series/../../../system`,
    `/wado-rs/studies/${s1.studyInstanceUID}/series/${s1se.seriesInstanceUID}/instances/${s1i.sopInstanceUID}/frames/1/../../../../../../../system`,
    '/wado-rs/../../system',
    `/wado?requestType=WADO&studyUID=../../system&seriesUID=${s1se.seriesInstanceUID}&objectUID=${s1i.sopInstanceUID}`,
  ];
  for (const path of literal) {
    await t.test(`literal ${path.slice(0, 70)}`, async () => {
      const r = await raw(path);
      // Caddy cleans such a path before routing; whatever is left is either no
      // DICOMweb resource (404) or not a UID (400), never a proxied answer.
      assert.ok(r.status === 400 || r.status === 404, `${path}: status ${r.status}`);
      assertNotFromArchive(r, path);
    });
  }
});

test(`[${FHIR_SERVER}] Endpoints where no archive lives: no URL injected, no request sent there`, { skip }, async (t) => {
  const fhir = fhirClient();
  await t.test('reads: the foreign studies come back untouched', async () => {
    for (const id of ['study-foreign', 'study-foreign-contained']) {
      const is = await fhir.read({ resourceType: 'ImagingStudy', id });
      const found = JSON.stringify(is);
      assert.ok(!found.includes(EXT_WADO_RS) && !found.includes(EXT_WADO_URI), `${id}: no extension injected`);
    }
  });
  await t.test('DICOMweb and WADO-URI for the foreign studies: an error, not a proxied answer', async () => {
    for (const uid of foreign.studyUids) {
      for (const url of [
        `${GW_DICOMWEB}/studies/${uid}`,
        `${GW_DICOMWEB}/studies/${uid}/metadata`,
        `${GW_DICOMWEB}/studies/${uid}/series/${uid}.1/instances/${uid}.1.1`,
        `${GW_DICOMWEB}/studies/${uid}/series/${uid}.1/instances/${uid}.1.1/rendered`,
        `${GW_WADO_URI}?requestType=WADO&studyUID=${uid}&seriesUID=${uid}.1&objectUID=${uid}.1.1&contentType=application/dicom`,
      ]) {
        const r = await get(url);
        assert.ok(r.status >= 400 && r.status < 600, `${url}: status ${r.status}`);
        assert.match(r.contentType, /^application\/json/, `${url}: JSON error`);
        assert.equal(typeof r.json?.message, 'string', `${url}: message`);
      }
    }
  });
  await t.test('QIDO-RS fan-out only asks the configured archives', async () => {
    const r = await get(`${GW_DICOMWEB}/studies?StudyInstanceUID=${foreign.studyUids[0]}`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, []);
  });
  await t.test('the trap got no request', () => {
    assert.deepEqual(trap.hits, [], 'requests sent to a non-archive address');
  });
});
