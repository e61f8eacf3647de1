// End-to-end: Endpoint shapes seen in the wild (issue 14), stored in the real
// FHIR server and served by the real Orthanc.
//
// Study S1 (study-level WADO-RS Endpoint, all series in one archive) has its
// Endpoint swapped, through the gateway, for one of these shapes in turn:
// - an address naming the studies resource (<archive root>/studies);
// - an address with a query (<archive root>?site=main), which the gateway
//   matches without its query and never sends to the archive;
// - an Endpoint with no standard connection type (a local code) whose only
//   DICOM detail is payloadMimeType application/dicom.
// Each time, the ImagingStudy read through the gateway carries the WADO-RS
// URLs, the URL of a series answers its metadata from the archive, and the
// Endpoint read through the gateway has the gateway's address. The write
// goes through the gateway, which drops the route it had cached for S1, so
// the retrieve routes by the new Endpoint (with an Endpoint that maps to no
// archive it would be 404). S1 and the Endpoints are restored at the end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  FHIR_SERVER, GW_FHIR, GW_DICOMWEB, ARCHIVE_HOSTS, EXT_WADO_RS, manifest, skip, get, putResource,
} from './lib/env.mjs';

const JSON_H = { Accept: 'application/fhir+json' };
const ROOTS = { a: 'http://127.0.0.1:18042/dicom-web', b: 'http://127.0.0.1:18043/pacs/dicom-web' };

test(`[${FHIR_SERVER}] Endpoint shapes seen in the wild: /studies, a query, payloadMimeType only`, { skip }, async (t) => {
  const st = manifest.studies.find((s) => s.scenario === 'S1');
  assert.ok(st, 'scenario S1 in the manifest');
  const archive = st.series[0].archive;
  assert.ok(st.series.every((se) => se.archive === archive), 'S1 lives in one archive');
  const root = ROOTS[archive];
  const read = await get(`${GW_FHIR}/ImagingStudy/study-s1`, { headers: JSON_H });
  assert.equal(read.status, 200);
  const original = read.json;
  // what the FHIR server stores: the gateway's extensions go on write-back anyway
  const shapes = [
    ['address ending in /studies', { connectionType: { system: 'http://terminology.hl7.org/CodeSystem/endpoint-connection-type', code: 'dicom-wado-rs' }, address: `${root}/studies` }],
    ['address with a query', { connectionType: { system: 'http://terminology.hl7.org/CodeSystem/endpoint-connection-type', code: 'dicom-wado-rs' }, address: `${root}?site=main` }],
    ['payloadMimeType only', { connectionType: { system: 'urn:example:local', code: 'pacs' }, payloadType: [{ text: 'DICOM' }], payloadMimeType: ['application/dicom'], address: root }],
  ];
  const created = [];
  try {
    for (const [i, [name, shape]] of shapes.entries()) {
      await t.test(name, async () => {
        const id = `ep-shape-${i}`;
        await putResource(GW_FHIR, { resourceType: 'Endpoint', id, status: 'active', name: `shape ${name}`, ...shape });
        created.push(id);
        const moved = structuredClone(original);
        delete moved.meta;
        moved.endpoint = [{ reference: `Endpoint/${id}` }];
        await putResource(GW_FHIR, moved);

        const is = (await get(`${GW_FHIR}/ImagingStudy/study-s1`, { headers: JSON_H })).json;
        assert.equal(is.endpoint[0].reference, `Endpoint/${id}`, 'the study names the new Endpoint');
        for (const se of is.series) {
          const url = (se.extension || []).find((e) => e.url === EXT_WADO_RS)?.valueUrl;
          assert.equal(url, `${GW_DICOMWEB}/studies/${st.studyInstanceUID}/series/${se.uid}`, `series ${se.uid}: WADO-RS URL injected`);
        }
        const se = is.series[0];
        const md = await get(`${GW_DICOMWEB}/studies/${st.studyInstanceUID}/series/${se.uid}/metadata`, { headers: { Accept: 'application/dicom+json' } });
        assert.equal(md.status, 200, `series metadata through the gateway: ${md.text.slice(0, 200)}`);
        assert.ok(Array.isArray(md.json) && md.json.length === se.instance.length, 'one dataset per instance');
        assert.equal(md.json[0]['0020000E'].Value[0], se.uid);

        const ep = await get(`${GW_FHIR}/Endpoint/${id}`, { headers: JSON_H });
        assert.equal(ep.json.address, GW_DICOMWEB, 'the Endpoint is answered with the gateway\'s address');
        for (const host of ARCHIVE_HOSTS) assert.ok(!ep.text.includes(host), `no archive address in the Endpoint: ${ep.text}`);
      });
    }
  } finally {
    const restore = structuredClone(original);
    delete restore.meta;
    // the injected extensions are removed on write-back
    await putResource(GW_FHIR, restore);
    for (const id of created) await get(`${GW_FHIR}/Endpoint/${id}`, { method: 'DELETE' });
  }
  const back = (await get(`${GW_FHIR}/ImagingStudy/study-s1`, { headers: JSON_H })).json;
  assert.deepEqual(back.endpoint, original.endpoint, 'S1 restored');
});
