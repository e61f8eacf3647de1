// Configuration and small helpers shared by the end-to-end tests of the gateway
// (integration/e2e/*.test.mjs other than archives.test.mjs). The tests act as a
// user would: every FHIR and DICOMweb request goes to the GATEWAY, except the
// transparency checks, which also ask the FHIR server directly to compare.
//
// Environment (integration/run-e2e.sh sets all of it):
//   FHIR_SERVER       hapi | medplum                      (default medplum)
//   GATEWAY_URL       the gateway                          (default http://127.0.0.1:8000)
//   FHIR_DIRECT_BASE  the FHIR server itself, for comparisons (default by FHIR_SERVER)
//   STUDIES_MANIFEST  make-studies.sh's studies.json       (default $STACK_RUN_DIR/studies/studies.json)
//   E2E_TRAP_PORT     a loopback port where no archive lives; the tests listen there to
//                     catch any request the gateway should never send (default 18099)
import { existsSync } from 'node:fs';
import { Client as FhirKitClient } from 'fhir-kit-client';
import { loadManifest } from './dicomweb.mjs';

export const FHIR_SERVER = process.env.FHIR_SERVER || 'medplum';
export const GATEWAY = (process.env.GATEWAY_URL || 'http://127.0.0.1:8000').replace(/\/+$/, '');
export const GW_FHIR = `${GATEWAY}/fhir`;
export const GW_DICOMWEB = `${GATEWAY}/wado-rs`;
export const GW_WADO_URI = `${GATEWAY}/wado`;
export const DIRECT_FHIR = (process.env.FHIR_DIRECT_BASE ||
  (FHIR_SERVER === 'hapi' ? 'http://127.0.0.1:8080/fhir' : 'http://127.0.0.1:8090/fhir')).replace(/\/+$/, '');
export const TRAP_PORT = Number(process.env.E2E_TRAP_PORT || 18099);

/** The Orthanc addresses a client must never see in an answer from the gateway. */
export const ARCHIVE_HOSTS = ['127.0.0.1:18042', '127.0.0.1:18043', 'localhost:18042', 'localhost:18043'];

export const EXT_BASE = 'https://fhirimaging.github.io/caddy-fhir-imaging/StructureDefinition/';
export const EXT_WADO_RS = `${EXT_BASE}wado-rs`;
export const EXT_WADO_URI = `${EXT_BASE}wado-uri`;

const manifestPath = process.env.STUDIES_MANIFEST ||
  (process.env.STACK_RUN_DIR ? `${process.env.STACK_RUN_DIR}/studies/studies.json` : undefined);
/** `skip` option for tests: a reason when there is no stack to test against. */
export const skip = manifestPath && existsSync(manifestPath) ? false : `no manifest (STUDIES_MANIFEST=${manifestPath}); run integration/run-e2e.sh`;
export const manifest = skip ? { uidRoot: '1.2.826.0.1.3680043.10.1234', studies: [] } : loadManifest(manifestPath);
export const byScenario = Object.fromEntries(manifest.studies.map((s) => [s.scenario, s]));

/** fhir-kit-client on the gateway's FHIR base (or another base). */
export function fhirClient(baseUrl = GW_FHIR) {
  return new FhirKitClient({ baseUrl });
}

/** The extension with that url in an element's extension list. */
export function ext(element, url) {
  return (element?.extension || []).filter((e) => e.url === url);
}

/** The study UID of a FHIR ImagingStudy (identifier urn:dicom:uid, urn:oid: dropped). */
export function studyUidOf(is) {
  const id = (is.identifier || []).find((i) => i.system === 'urn:dicom:uid');
  return id?.value?.replace(/^urn:oid:/, '');
}

/** fetch that returns {status, headers, text, buf, json?}. */
export async function get(url, init = {}) {
  const res = await fetch(url, init);
  const buf = Buffer.from(await res.arrayBuffer());
  const text = buf.toString('utf8');
  let json;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, contentType: res.headers.get('content-type') || '', buf, text, json };
}

/** A PUT of a FHIR resource (client id); throws unless 200/201. */
export async function putResource(base, resource) {
  const url = `${base}/${resource.resourceType}/${resource.id}`;
  const r = await get(url, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/fhir+json', Accept: 'application/fhir+json' },
    body: JSON.stringify(resource),
  });
  if (r.status !== 200 && r.status !== 201) throw new Error(`PUT ${url} -> ${r.status}: ${r.text.slice(0, 400)}`);
  return r;
}

/**
 * Resources that point at an address where no archive lives (the trap): an
 * ImagingStudy whose study Endpoints (WADO-RS and WADO-URI) are there, and one
 * with a contained Endpoint there. The gateway must not inject URLs for them
 * nor ever send a request there. Written THROUGH THE GATEWAY, idempotent.
 */
export function foreignResources() {
  const root = manifest.uidRoot || '1.2.826.0.1.3680043.10.1234';
  const trap = `http://127.0.0.1:${TRAP_PORT}`;
  const ct = (code) => ({ system: 'http://terminology.hl7.org/CodeSystem/endpoint-connection-type', code });
  const ep = (id, code, address) => ({
    resourceType: 'Endpoint', id, status: 'active', connectionType: ct(code),
    payloadType: [{ text: 'DICOM' }], address,
  });
  const study = (id, n, extra) => ({
    resourceType: 'ImagingStudy', id, status: 'available',
    identifier: [{ system: 'urn:dicom:uid', value: `urn:oid:${root}.${n}` }],
    subject: { reference: 'Patient/pat-s1' },
    ...extra,
    series: [{
      uid: `${root}.${n}.1`, number: 1,
      modality: { system: 'http://dicom.nema.org/resources/ontology/DCM', code: 'CT' },
      instance: [{ uid: `${root}.${n}.1.1`, number: 1, sopClass: { system: 'urn:ietf:rfc:3986', code: 'urn:oid:1.2.840.10008.5.1.4.1.1.2' } }],
    }],
  });
  return {
    trap,
    studyUids: [`${root}.91`, `${root}.92`],
    resources: [
      ep('ep-foreign-wado-rs', 'dicom-wado-rs', `${trap}/dicom-web`),
      ep('ep-foreign-wado-uri', 'dicom-wado-uri', `${trap}/wado`),
      study('study-foreign', 91, { endpoint: [{ reference: 'Endpoint/ep-foreign-wado-rs' }, { reference: 'Endpoint/ep-foreign-wado-uri' }] }),
      study('study-foreign-contained', 92, {
        contained: [ep('trap', 'dicom-wado-rs', `${trap}/dicom-web`)],
        endpoint: [{ reference: '#trap' }],
      }),
    ],
  };
}

/** A loopback HTTP listener that records every request it gets (the trap). */
export async function startTrap(port = TRAP_PORT) {
  const http = await import('node:http');
  const hits = [];
  const server = http.createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('[]');
  });
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(port, '127.0.0.1', resolve); });
  return { hits, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }) };
}
