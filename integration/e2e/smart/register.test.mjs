// register_imaging_study against HAPI enforcing SMART (caddyfile/examples/smart.Caddyfile):
// a client allowed to store images stores through the gateway, and the ImagingStudy
// is written with the GATEWAY's own client_credentials token (its fhir { ... } block),
// (the storing client's token never goes to FHIR; module/registration_test.go checks that).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientCredentials } from '../lib/smart.mjs';
import { makeClient } from '../lib/dicomweb.mjs';
import { makeInstance, arrayBuffer } from '../lib/dcm.mjs';
import { GATEWAY, DIRECT_FHIR, manifest, get } from '../lib/env.mjs';
import { skip, bearer } from './setup.mjs';

const ORTHANC_A = process.env.ORTHANC_A_URL || 'http://127.0.0.1:18042';

test('a store by an allowed client is registered in FHIR with the gateway\'s own token', { skip }, async () => {
  const uid = `${manifest.uidRoot}.79`;
  const dir = mkdtempSync(join(tmpdir(), 'register-smart-'));
  const admin = (await clientCredentials({ clientId: 'seeder', scope: 'system/*.cruds system/*.rs' })).access_token;
  const search = () => get(`${DIRECT_FHIR}/ImagingStudy?identifier=${encodeURIComponent(`urn:dicom:uid|urn:oid:${uid}`)}`,
    { headers: { Accept: 'application/fhir+json', ...bearer(admin) } });
  try {
    // A client that may store images (a system/ scope that may create ImagingStudy). The
    // gateway drops its Authorization before anything goes on; FHIR takes the writes
    // (and the Patient look-up) only with a token, so the gateway's own one made them.
    const storer = (await clientCredentials({ clientId: 'seeder', scope: 'system/*.cruds' })).access_token;
    const file = makeInstance(dir, 1, { study: uid, patient: 'pat-s1' });
    const dw = makeClient(`${GATEWAY}/wado-rs`, { headers: bearer(storer) });
    await dw.storeInstances({ datasets: [arrayBuffer(file)] });

    const found = await search();
    assert.equal(found.status, 200);
    const entries = (found.json.entry || []).filter((e) => e.resource.resourceType === 'ImagingStudy');
    assert.equal(entries.length, 1, 'the ImagingStudy is in FHIR right after the store');
    const is = entries[0].resource;
    assert.equal(is.subject?.reference, 'Patient/pat-s1', 'the subject, found by PatientID with the gateway\'s token');
    assert.equal(is.numberOfInstances, 1);
    assert.match(is.endpoint?.[0]?.reference || '', /^Endpoint\//);
    const v = is.meta.versionId;
    await dw.storeInstances({ datasets: [arrayBuffer(file)] });
    assert.equal((await search()).json.entry[0].resource.meta.versionId, v, 'storing again keeps the version');

    // A client without a store scope is refused before anything is stored or written.
    const reader = (await clientCredentials({ clientId: 'seeder', scope: 'system/*.rs' })).access_token;
    const refused = await fetch(`${GATEWAY}/wado-rs/studies`, {
      method: 'POST', body: file,
      headers: { 'Content-Type': 'multipart/related; type="application/dicom"; boundary=B', ...bearer(reader) },
    });
    assert.equal(refused.status, 403);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    for (const e of (await search()).json?.entry || []) {
      await fetch(`${DIRECT_FHIR}/ImagingStudy/${e.resource.id}`, { method: 'DELETE', headers: bearer(admin) });
    }
    const ids = await get(`${ORTHANC_A}/tools/lookup`, { method: 'POST', body: uid });
    for (const r of ids.json || []) if (r.Type === 'Study') await fetch(`${ORTHANC_A}${r.Path}`, { method: 'DELETE' });
  }
});
