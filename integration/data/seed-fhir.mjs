#!/usr/bin/env node
// Seed a FHIR R4 (or STU3) server with the Patients, Endpoints and ImagingStudies that
// describe the studies of a make-studies.sh manifest (scenarios S1-S4).
// Plain fetch, PUT with client-assigned ids (so running it twice is harmless).
//
//   node data/seed-fhir.mjs [--fhir URL] [--manifest PATH] [--a-dicomweb URL] [--b-dicomweb URL]
//                           [--a-wado-uri URL] [--b-wado-uri URL] [--token TOKEN] [--quiet]
//                           [--fhir-version r4|stu3]
// --fhir-version stu3 (env SEED_FHIR_VERSION) writes the resources as STU3 has them (buildResourcesSTU3).
// Defaults from env: FHIR_BASE (else GATEWAY_URL/fhir, else http://127.0.0.1:8000/fhir),
//   STUDIES_MANIFEST (else $STACK_RUN_DIR/studies/studies.json, else integration/tmp/studies/studies.json), ORTHANC_A_DICOMWEB,
//   ORTHANC_B_DICOMWEB, ORTHANC_A_WADO_URI, ORTHANC_B_WADO_URI (else stack.sh's addresses),
//   FHIR_TOKEN (a bearer token for a FHIR server that requires one).
// In the end-to-end tests FHIR_BASE is the GATEWAY's /fhir base: writes go through it.
// Prints a JSON summary (ids of what was written, per scenario) on stdout.
//
// Also usable as a module: import { seed, buildResources } from './seed-fhir.mjs'.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const CONNECTION_TYPE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/endpoint-connection-type';
export const DICOM_UID_SYSTEM = 'urn:dicom:uid';

export function defaults(env = process.env) {
  return {
    fhirVersion: env.SEED_FHIR_VERSION || 'r4',
    token: env.FHIR_TOKEN || '',
    fhir: env.FHIR_BASE || (env.GATEWAY_URL ? env.GATEWAY_URL.replace(/\/+$/, '') + '/fhir' : 'http://127.0.0.1:8000/fhir'),
    manifest: env.STUDIES_MANIFEST ||
      (env.STACK_RUN_DIR ? path.join(env.STACK_RUN_DIR, 'studies', 'studies.json') : path.join(HERE, '..', 'tmp', 'studies', 'studies.json')),
    archives: {
      a: {
        dicomweb: env.ORTHANC_A_DICOMWEB || 'http://127.0.0.1:18042/dicom-web',
        wadoUri: env.ORTHANC_A_WADO_URI || 'http://127.0.0.1:18042/wado',
      },
      b: {
        dicomweb: env.ORTHANC_B_DICOMWEB || 'http://127.0.0.1:18043/pacs/dicom-web',
        wadoUri: env.ORTHANC_B_WADO_URI || 'http://127.0.0.1:18043/pacs/wado',
      },
    },
  };
}

const fhirDate = (d) => `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}`;
const sexToGender = { F: 'female', M: 'male', O: 'other' };

/** Endpoint id for an archive and a connection type ('wado-rs' | 'wado-uri'). */
export const endpointId = (archive, kind) => `ep-${archive}-${kind}`;

export function endpointResource(archive, kind, address) {
  return {
    resourceType: 'Endpoint',
    id: endpointId(archive, kind),
    status: 'active',
    connectionType: { system: CONNECTION_TYPE_SYSTEM, code: `dicom-${kind}` },
    name: `Orthanc ${archive.toUpperCase()} ${kind === 'wado-rs' ? 'WADO-RS' : 'WADO-URI'}`,
    payloadType: [{
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/endpoint-payload-type', code: 'DICOM' }],
      text: 'DICOM',
    }],
    payloadMimeType: ['application/dicom'],
    address,
  };
}

/**
 * The FHIR resources for a manifest, in write order (Endpoints, Patients, ImagingStudies).
 * archives: {a: {dicomweb, wadoUri}, b: {...}}.
 */
export function buildResources(manifest, archives) {
  const endpoints = [];
  for (const a of Object.keys(archives).sort()) {
    endpoints.push(endpointResource(a, 'wado-rs', archives[a].dicomweb));
    if (archives[a].wadoUri) endpoints.push(endpointResource(a, 'wado-uri', archives[a].wadoUri));
  }
  const patients = [];
  const studies = [];
  for (const st of manifest.studies) {
    const p = st.patient;
    const sc = st.scenario.toLowerCase();
    if (!patients.some((x) => x.id === p.id)) patients.push({
      resourceType: 'Patient',
      id: p.id,
      identifier: [{ system: 'urn:oid:1.2.826.0.1.3680043.10.1234.99', value: p.id }],
      name: [{ family: p.family, given: [p.given] }],
      gender: sexToGender[p.sex] || 'unknown',
      birthDate: fhirDate(p.birthDate),
    });
    const ref = (archive, kind) => ({ reference: `Endpoint/${endpointId(archive, kind)}` });
    const studyArchive = st.series[0].archive;
    // A replicated study (S6): each Endpoint of every replica, in order.
    const studyRefs = (ct) => (st.fhir.replicas || [studyArchive]).map((a) => ref(a, ct.replace(/^dicom-/, '')));
    const study = {
      resourceType: 'ImagingStudy',
      id: `study-${sc}`,
      // A restricted study (HL7 confidentiality R): the FHIR server hides it
      // from the patient's proxy (integration/hapi's consent rule).
      ...(st.fhir.restricted
        ? { meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }] } }
        : {}),
      identifier: [
        { system: DICOM_UID_SYSTEM, value: `${st.fhir.identifierValuePrefix}${st.studyInstanceUID}` },
        {
          type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'ACSN' }] },
          value: st.accession,
        },
      ],
      status: 'available',
      subject: { reference: `Patient/${p.id}` },
      started: `${fhirDate(st.studyDate)}T10:15:00Z`,
      ...(st.fhir.studyEndpoints.length > 0
        ? { endpoint: st.fhir.studyEndpoints.flatMap(studyRefs) }
        : {}),
      numberOfSeries: st.series.length,
      numberOfInstances: st.series.reduce((n, s) => n + s.instances.length, 0),
      description: st.description,
      series: st.series.map((se) => ({
        uid: se.seriesInstanceUID,
        number: se.number,
        modality: { system: 'http://dicom.nema.org/resources/ontology/DCM', code: se.modality },
        description: se.description,
        numberOfInstances: se.instances.length,
        ...(st.fhir.seriesEndpoints ? { endpoint: [ref(se.archive, 'wado-rs')] } : {}),
        ...((st.fhir.replicaSeries || []).includes(se.number)
          ? { endpoint: st.fhir.replicas.map((a) => ref(a, 'wado-rs')) } : {}),
        instance: se.instances.map((i) => ({
          uid: i.sopInstanceUID,
          sopClass: { system: 'urn:ietf:rfc:3986', code: `urn:oid:${i.sopClassUID}` },
          number: i.number,
        })),
      })),
    };
    studies.push(study);
  }
  return { endpoints, patients, studies };
}

export const STU3_CONNECTION_TYPE_SYSTEM = 'http://hl7.org/fhir/endpoint-connection-type';

/**
 * The same studies as buildResources, written as FHIR STU3 (3.0.2) has them:
 * Endpoint.connectionType a Coding of http://hl7.org/fhir/endpoint-connection-type and
 * the required payloadType; ImagingStudy.uid, series.uid and series.instance.uid of type
 * oid, so urn:oid:<uid> at every level (no identifier: STU3 has the DICOM UID in uid),
 * ImagingStudy.patient (not subject), accession, availability (STU3 has no status), and
 * instance.sopClass an oid too. A study with series endpoints (S2, S3) also gets a study
 * WADO-RS endpoint, on the archive of its first series, which the series endpoints override
 * (S2's second series lives in archive b: served from a, it would not be found).
 */
export function buildResourcesSTU3(manifest, archives) {
  const r4 = buildResources(manifest, archives);
  const endpoints = r4.endpoints.map((e) => ({
    resourceType: 'Endpoint',
    id: e.id,
    status: 'active',
    connectionType: { system: STU3_CONNECTION_TYPE_SYSTEM, code: e.connectionType.code },
    name: e.name,
    payloadType: [{ text: 'DICOM' }], // as the specification's example-wadors has it
    payloadMimeType: ['application/dicom'],
    address: e.address,
  }));
  const oid = (uid) => `urn:oid:${uid}`;
  const studies = manifest.studies.map((st, k) => {
    const is = r4.studies[k];
    return {
      resourceType: 'ImagingStudy',
      id: is.id,
      uid: oid(st.studyInstanceUID),
      accession: { ...is.identifier[1], type: { coding: [{ system: 'http://hl7.org/fhir/v2/0203', code: 'ACSN' }] } },
      availability: 'ONLINE',
      patient: is.subject,
      started: is.started,
      endpoint: is.endpoint || [{ reference: `Endpoint/${endpointId(st.series[0].archive, 'wado-rs')}` }],
      numberOfSeries: is.numberOfSeries,
      numberOfInstances: is.numberOfInstances,
      description: is.description,
      series: is.series.map((se) => ({
        uid: oid(se.uid),
        number: se.number,
        modality: se.modality,
        description: se.description,
        numberOfInstances: se.numberOfInstances,
        availability: 'ONLINE',
        ...(se.endpoint ? { endpoint: se.endpoint } : {}),
        instance: se.instance.map((i) => ({
          uid: oid(i.uid),
          number: i.number,
          sopClass: i.sopClass.code, // already urn:oid:<sop class>
        })),
      })),
    };
  });
  return { endpoints, patients: r4.patients, studies };
}

async function put(fhir, resource, token) {
  const url = `${fhir}/${resource.resourceType}/${resource.id}`;
  const res = await fetch(url, {
    method: 'PUT',
    headers: {
      'Content-Type': 'application/fhir+json', Accept: 'application/fhir+json',
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(resource),
  });
  const text = await res.text();
  if (res.status !== 200 && res.status !== 201) {
    throw new Error(`PUT ${url} -> ${res.status}: ${text.slice(0, 500)}`);
  }
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

/** Write everything; returns a summary. opts as in defaults(). */
export async function seed(opts = {}) {
  const o = { ...defaults(), ...opts };
  o.fhir = o.fhir.replace(/\/+$/, '');
  const manifest = typeof o.manifest === 'string' ? JSON.parse(readFileSync(o.manifest, 'utf8')) : o.manifest;
  if (o.fhirVersion !== 'r4' && o.fhirVersion !== 'stu3') throw new Error(`fhirVersion must be r4 or stu3, not ${o.fhirVersion}`);
  const build = o.fhirVersion === 'stu3' ? buildResourcesSTU3 : buildResources;
  const { endpoints, patients, studies } = build(manifest, o.archives);
  const log = o.quiet ? () => {} : (m) => process.stderr.write(`[seed] ${m}\n`);
  const t0 = Date.now();
  const statuses = {};
  for (const r of [...endpoints, ...patients, ...studies]) {
    const { status } = await put(o.fhir, r, o.token);
    statuses[`${r.resourceType}/${r.id}`] = status;
  }
  log(`${endpoints.length} Endpoints, ${patients.length} Patients, ${studies.length} ImagingStudies -> ${o.fhir} in ${Date.now() - t0} ms`);
  return {
    fhir: o.fhir,
    endpoints: Object.fromEntries(endpoints.map((e) => [e.id, e.address])),
    scenarios: Object.fromEntries(manifest.studies.map((st, k) => [st.scenario, {
      imagingStudy: `ImagingStudy/${studies[k].id}`,
      patient: `Patient/${st.patient.id}`,
      studyInstanceUID: st.studyInstanceUID,
      // R4: the identifier value; STU3: ImagingStudy.uid (urn:oid:<uid>)
      identifierValue: studies[k].identifier ? studies[k].identifier[0].value : studies[k].uid,
    }])),
    statuses,
  };
}

function parseArgs(argv) {
  const o = defaults();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => { if (i + 1 >= argv.length) throw new Error(`${a} needs a value`); return argv[++i]; };
    switch (a) {
      case '--fhir': o.fhir = next(); break;
      case '--manifest': o.manifest = next(); break;
      case '--a-dicomweb': o.archives.a.dicomweb = next(); break;
      case '--b-dicomweb': o.archives.b.dicomweb = next(); break;
      case '--a-wado-uri': o.archives.a.wadoUri = next(); break;
      case '--b-wado-uri': o.archives.b.wadoUri = next(); break;
      case '--token': o.token = next(); break;
      case '--fhir-version': o.fhirVersion = next(); break;
      case '--quiet': o.quiet = true; break;
      case '-h': case '--help':
        process.stdout.write(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n')
          .filter((l) => l.startsWith('//')).slice(0, 16).map((l) => l.slice(3)).join('\n') + '\n');
        process.exit(0);
      // eslint-disable-next-line no-fallthrough
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  return o;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const summary = await seed(parseArgs(process.argv.slice(2)));
    process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
  } catch (err) {
    process.stderr.write(`[seed] ERROR ${err.message}\n`);
    process.exit(1);
  }
}
