// register_imaging_study (caddyfile/examples/stack.Caddyfile turns it on): a study
// made here with dcmtk's dump2dcm and stored with dicomweb-client's storeInstances
// THROUGH THE GATEWAY is at once an ImagingStudy in FHIR (found with fhir-kit-client
// through the gateway) whose injected WADO-RS URLs retrieve the very bytes stored;
// storing the same instance again leaves its version as it was; storing another
// instance into it updates it (a new version listing the instance). A PatientID
// that no Patient has leaves the study without a subject; parallel stores into a
// new study make one ImagingStudy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeClient, sha256, fetchMultipart } from './lib/dicomweb.mjs';
import { makeInstance as makeDcm, arrayBuffer } from './lib/dcm.mjs';
import {
  FHIR_SERVER, GW_DICOMWEB, DIRECT_FHIR, EXT_WADO_RS, skip, manifest, fhirClient, ext, get,
} from './lib/env.mjs';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const ORTHANC_A = process.env.ORTHANC_A_URL || 'http://127.0.0.1:18042';
const ORTHANC_A_DICOMWEB = process.env.ORTHANC_A_DICOMWEB || `${ORTHANC_A}/dicom-web`;
const root = manifest.uidRoot;
const STUDY = `${root}.77`;
const PATIENT_ID = 'pat-s4'; // a Patient the seed made (identifier value pat-s4)
const study = STUDY;
const series = `${study}.1`;
const patientId = PATIENT_ID;

const makeInstance = (dir, n, { study = STUDY, patient = PATIENT_ID } = {}) => makeDcm(dir, n, { study, patient });

/** The ImagingStudies of a study, found through the gateway. */
async function studies(fhir, uid = STUDY) {
  const bundle = await fhir.search({ resourceType: 'ImagingStudy', searchParams: { identifier: `urn:dicom:uid|urn:oid:${uid}` } });
  return (bundle.entry || []).map((e) => e.resource).filter((r) => r.resourceType === 'ImagingStudy');
}

test(`[${FHIR_SERVER}] a study stored through the gateway is registered as an ImagingStudy at once, idempotently`, { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'register-'));
  const dw = makeClient(GW_DICOMWEB);
  const fhir = fhirClient();
  let registered;
  try {
    const first = makeInstance(dir, 1);
    const second = makeInstance(dir, 2);
    assert.equal((await studies(fhir)).length, 0, 'the study is not in FHIR before it is stored');

    await dw.storeInstances({ datasets: [arrayBuffer(first)] });
    let found = await studies(fhir);
    assert.equal(found.length, 1, 'one ImagingStudy right after the store');
    registered = found[0];
    const v1 = registered.meta?.versionId;
    assert.ok(v1, 'the ImagingStudy has a versionId');

    // What it says, from the archive's own facts.
    const patients = await fhir.search({ resourceType: 'Patient', searchParams: { identifier: patientId } });
    assert.equal(patients.entry?.length, 1, 'the seeded Patient is found by the DICOM PatientID');
    assert.equal(registered.subject?.reference, `Patient/${patients.entry[0].resource.id}`);
    assert.equal(registered.status, 'available');
    assert.equal(registered.started, '2024-06-01');
    assert.deepEqual(registered.modality?.map((m) => m.code), ['CT']);
    assert.equal(registered.numberOfSeries, 1);
    assert.equal(registered.numberOfInstances, 1);
    assert.equal(registered.series.length, 1);
    const se = registered.series[0];
    assert.equal(se.uid, series);
    assert.equal(se.number, 3);
    assert.equal(se.modality?.code, 'CT');
    assert.deepEqual(se.instance.map((i) => [i.uid, i.number, i.sopClass?.code]), [[`${series}.1`, 1, `urn:oid:${CT}`]]);

    // Its Endpoint: the store archive's dicom-wado-rs Endpoint, as the FHIR server keeps it.
    const epRef = registered.endpoint?.[0]?.reference;
    assert.match(epRef || '', /^Endpoint\/[^/]+$/);
    const ep = await get(`${DIRECT_FHIR}/${epRef}`, { headers: { Accept: 'application/fhir+json' } });
    assert.equal(ep.status, 200);
    assert.equal(ep.json.connectionType?.code, 'dicom-wado-rs');
    assert.equal(ep.json.status, 'active');
    assert.equal(ep.json.address.replace(/\/+$/, ''), ORTHANC_A_DICOMWEB, 'the Endpoint is the store archive (orthanc-a)');

    // The injected URL retrieves the bytes that were stored.
    const url = ext(se.instance[0], EXT_WADO_RS)[0]?.valueUrl;
    assert.ok(url, 'a WADO-RS URL is injected for the instance');
    const back = await fetchMultipart(url);
    assert.equal(back.status, 200);
    assert.equal(back.parts.length, 1);
    assert.equal(sha256(back.parts[0].body), sha256(first), 'the injected URL retrieves the stored bytes (SHA-256)');

    // Storing it again changes nothing.
    await dw.storeInstances({ datasets: [arrayBuffer(first)] });
    found = await studies(fhir);
    assert.equal(found.length, 1);
    assert.equal(found[0].meta?.versionId, v1, 'storing the same instance again leaves the version as it was');

    // Storing another instance into it updates it.
    await dw.storeInstances({ datasets: [arrayBuffer(second)] });
    found = await studies(fhir);
    assert.equal(found.length, 1);
    registered = found[0];
    assert.notEqual(registered.meta?.versionId, v1, 'a new instance makes a new version');
    assert.equal(registered.numberOfInstances, 2);
    assert.deepEqual(registered.series[0].instance.map((i) => i.uid), [`${series}.1`, `${series}.2`]);
    const url2 = ext(registered.series[0].instance[1], EXT_WADO_RS)[0]?.valueUrl;
    const back2 = await fetchMultipart(url2);
    assert.equal(back2.status, 200);
    assert.equal(sha256(back2.parts[0].body), sha256(second));
  } finally {
    rmSync(dir, { recursive: true, force: true });
    // Leave FHIR and the archive as the seed made them.
    for (const is of await studies(fhir).catch(() => [])) {
      await fetch(`${DIRECT_FHIR}/ImagingStudy/${is.id}`, { method: 'DELETE' });
    }
    const ids = await get(`${ORTHANC_A}/tools/lookup`, { method: 'POST', body: study });
    for (const r of ids.json || []) if (r.Type === 'Study') await fetch(`${ORTHANC_A}${r.Path}`, { method: 'DELETE' });
  }
});

test(`[${FHIR_SERVER}] a PatientID no Patient has: registered without a subject (unknown_patient leave); parallel stores make one study`, { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'register-'));
  const dw = makeClient(GW_DICOMWEB);
  const fhir = fhirClient();
  const uid = `${root}.78`;
  try {
    const files = [1, 2, 3].map((n) => makeInstance(dir, n, { study: uid, patient: 'pat-nobody-78' }));
    // Three clients store one instance each, at once, into a study FHIR does not know.
    await Promise.all(files.map((f) => makeClient(GW_DICOMWEB).storeInstances({ datasets: [arrayBuffer(f)] })));
    const found = await studies(fhir, uid);
    assert.equal(found.length, 1, 'one ImagingStudy for the study');
    const is = found[0];
    assert.equal(is.subject, undefined, 'no subject: no Patient has that PatientID, and none is made');
    assert.equal(is.numberOfInstances, 3);
    assert.deepEqual(is.series[0].instance.map((i) => i.uid).sort(), [1, 2, 3].map((n) => `${uid}.1.${n}`));
    const patients = await fhir.search({ resourceType: 'Patient', searchParams: { identifier: 'pat-nobody-78' } });
    assert.equal(patients.entry?.length ?? 0, 0, 'no Patient was made');
    const url = ext(is.series[0].instance[0], EXT_WADO_RS)[0]?.valueUrl;
    assert.equal((await fetchMultipart(url)).status, 200, 'its URLs route at once');
    // All three again, one request: nothing changes.
    const v = is.meta?.versionId;
    await dw.storeInstances({ datasets: files.map(arrayBuffer) });
    assert.equal((await studies(fhir, uid))[0].meta?.versionId, v);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    for (const is of await studies(fhir, uid).catch(() => [])) {
      await fetch(`${DIRECT_FHIR}/ImagingStudy/${is.id}`, { method: 'DELETE' });
    }
    const ids = await get(`${ORTHANC_A}/tools/lookup`, { method: 'POST', body: uid });
    for (const r of ids.json || []) if (r.Type === 'Study') await fetch(`${ORTHANC_A}${r.Path}`, { method: 'DELETE' });
  }
});
