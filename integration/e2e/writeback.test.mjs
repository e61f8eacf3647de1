// End-to-end: the gateway as a transparent FHIR proxy, issue 5.
//
// The stack's Caddyfile sends the FHIR server its own address as Host
// (header_up Host {upstream_hostport}), so HAPI writes links, fullUrls and
// Location headers on http://127.0.0.1:8080/fhir. The gateway is called at
// http://127.0.0.1:8000/fhir and must swap one base for the other in both
// directions, and must remove the extensions it injects from what clients
// write back.
//
// HAPI-specific expectations are marked with `hapi` below: HAPI writes
// Bundle.link paging links (<base>?_getpages=...), entry.fullUrl, Location
// and Content-Location. Medplum's in-memory server writes none of these, so
// for it the "no upstream address" checks hold trivially and the paging test
// only checks the first page.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  FHIR_SERVER, GW_FHIR, GW_DICOMWEB, GW_WADO_URI, DIRECT_FHIR, EXT_WADO_RS, EXT_WADO_URI, manifest, skip, get,
} from './lib/env.mjs';

const hapi = FHIR_SERVER === 'hapi';
const UPSTREAM_HOST = new URL(DIRECT_FHIR).host;
const JSON_H = { Accept: 'application/fhir+json' };
const WRITE_H = { 'Content-Type': 'application/fhir+json', Accept: 'application/fhir+json' };

/** Fails when the upstream's address appears anywhere in a response. */
function assertNoUpstream(r, what) {
  assert.ok(!r.text.includes(UPSTREAM_HOST), `${what}: body names the upstream ${UPSTREAM_HOST}: ${r.text.slice(0, 300)}`);
  for (const [k, v] of r.headers) assert.ok(!v.includes(UPSTREAM_HOST), `${what}: header ${k}: ${v}`);
}

/** Drop the gateway's own extensions (and an emptied extension list). */
function withoutInjected(doc) {
  const visit = (v) => {
    if (Array.isArray(v)) { v.forEach(visit); return; }
    if (!v || typeof v !== 'object') return;
    if (Array.isArray(v.extension)) {
      v.extension = v.extension.filter((e) => e.url !== EXT_WADO_RS && e.url !== EXT_WADO_URI);
      if (v.extension.length === 0) delete v.extension;
    }
    Object.values(v).forEach(visit);
  };
  visit(doc);
  return doc;
}

/** A gateway answer in the form the FHIR server gave it: base swapped back, extensions dropped. */
const asDirect = (text) => withoutInjected(JSON.parse(text.split(GW_FHIR).join(DIRECT_FHIR)));

/**
 * What an archive Endpoint's address means: the gateway answers it with its own
 * DICOMweb or WADO-URI base (endpoint_addresses public), the FHIR server with the
 * archive's; both must mean the same kind of base.
 */
const ADDRESS_ROLES = {
  [GW_DICOMWEB]: '<dicomweb>', [GW_WADO_URI]: '<wado-uri>',
  'http://127.0.0.1:18042/dicom-web': '<dicomweb>', 'http://127.0.0.1:18043/pacs/dicom-web': '<dicomweb>',
  'http://127.0.0.1:18042/wado': '<wado-uri>', 'http://127.0.0.1:18043/pacs/wado': '<wado-uri>',
};
function addressRoles(v) {
  if (Array.isArray(v)) v.forEach(addressRoles);
  else if (v && typeof v === 'object') {
    if (v.resourceType === 'Endpoint' && ADDRESS_ROLES[v.address]) v.address = ADDRESS_ROLES[v.address];
    Object.values(v).forEach(addressRoles);
  }
  return v;
}

/** Per-execution fields of a Bundle (HAPI: id, lastUpdated, the search id in paging links); Endpoint addresses by role. */
function normalised(doc) {
  addressRoles(doc);
  if (doc.resourceType === 'Bundle') {
    if (doc.id) for (const l of doc.link || []) l.url = l.url.split(doc.id).join('<search-id>');
    delete doc.id;
    if (doc.meta) delete doc.meta.lastUpdated;
  }
  return doc;
}

/** A stored resource as compared between the two round trips. */
const stored = (r, id) => {
  const doc = structuredClone(r);
  delete doc.meta;
  doc.id = id;
  return doc;
};

test(`[${FHIR_SERVER}] paging through a multi-page search never shows the upstream address`, { skip }, async () => {
  const first = await get(`${DIRECT_FHIR}/Patient?_count=1&_sort=_id`, { headers: JSON_H });
  assert.equal(first.status, 200);
  if (hapi) {
    // What makes this test meaningful: HAPI, told its own Host, writes its own address.
    const next = first.json.link.find((l) => l.relation === 'next');
    assert.ok(next?.url.startsWith(`${DIRECT_FHIR}?_getpages=`), `HAPI next link ${next?.url}`);
  }
  let url = `${GW_FHIR}/Patient?_count=1&_sort=_id`;
  const ids = [];
  let pages = 0;
  while (url && pages < 50) {
    const r = await get(url, { headers: JSON_H });
    assert.equal(r.status, 200, url);
    assertNoUpstream(r, `page ${pages + 1}`);
    for (const l of r.json.link || []) assert.ok(l.url.startsWith(GW_FHIR), `link ${l.relation} ${l.url}`);
    for (const e of r.json.entry || []) {
      if (e.fullUrl) assert.equal(e.fullUrl, `${GW_FHIR}/Patient/${e.resource.id}`);
      ids.push(e.resource.id);
    }
    pages++;
    url = (r.json.link || []).find((l) => l.relation === 'next')?.url;
    if (!hapi) break; // Medplum has no paging links
  }
  if (hapi) {
    assert.ok(pages >= 4, `${pages} pages`);
    const all = await get(`${DIRECT_FHIR}/Patient?_count=500&_sort=_id`, { headers: JSON_H });
    assert.deepEqual(ids, all.json.entry.map((e) => e.resource.id), 'the pages add up to the whole result');
  }
});

test(`[${FHIR_SERVER}] create through the gateway: Location on the public base`, { skip }, async () => {
  const body = JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Transparent', given: ['Create'] }] });
  for (const prefer of ['return=representation', 'return=minimal', 'return=OperationOutcome']) {
    const r = await get(`${GW_FHIR}/Patient`, { method: 'POST', headers: { ...WRITE_H, Prefer: prefer }, body });
    assert.equal(r.status, 201, `${prefer}: ${r.text.slice(0, 200)}`);
    assertNoUpstream(r, prefer);
    const loc = r.headers.get('location');
    if (hapi) {
      assert.match(loc, new RegExp(`^${GW_FHIR.replace(/[.]/g, '\\.')}/Patient/[^/]+/_history/1$`), `${prefer}: Location ${loc}`);
      if (prefer === 'return=minimal') assert.equal(r.text, '', 'return=minimal: no body');
      if (prefer === 'return=OperationOutcome') assert.equal(r.json.resourceType, 'OperationOutcome');
      if (prefer === 'return=representation') assert.equal(r.json.resourceType, 'Patient');
    } else if (loc) {
      assert.ok(!loc.includes(UPSTREAM_HOST), `Location ${loc}`);
    }
  }
});

/** study-s1 as stored, under another id, with an extension of the client's own on a series. */
async function copyOfS1(id) {
  const s1 = (await get(`${DIRECT_FHIR}/ImagingStudy/study-s1`, { headers: JSON_H })).json;
  const copy = { ...s1, id };
  delete copy.meta;
  copy.series = structuredClone(s1.series);
  copy.series[0].extension = [{ url: 'http://example.org/fhir/StructureDefinition/client-note', valueString: 'kept' }];
  const r = await get(`${DIRECT_FHIR}/ImagingStudy/${id}`, { method: 'PUT', headers: WRITE_H, body: JSON.stringify(copy) });
  assert.ok(r.status === 200 || r.status === 201, `PUT ${id}: ${r.status} ${r.text.slice(0, 200)}`);
}

/** GET, modify, PUT on one base; returns what the GET showed. */
async function roundTrip(base, id) {
  const read = await get(`${base}/ImagingStudy/${id}`, { headers: JSON_H });
  assert.equal(read.status, 200);
  const doc = read.json;
  doc.description = 'changed in a read-modify-write';
  doc.series[0].description = 'series changed too';
  const put = await get(`${base}/ImagingStudy/${id}`, {
    method: 'PUT', headers: { ...WRITE_H, 'If-Match': read.headers.get('etag') || '*' }, body: JSON.stringify(doc),
  });
  assert.equal(put.status, 200, `PUT ${base}/ImagingStudy/${id}: ${put.text.slice(0, 300)}`);
  return read;
}

test(`[${FHIR_SERVER}] GET, modify, PUT of an ImagingStudy through the gateway stores what a direct one does`, { skip }, async () => {
  await copyOfS1('rt-gw');
  await copyOfS1('rt-direct');
  const seen = await roundTrip(GW_FHIR, 'rt-gw');
  assert.ok(seen.text.includes(EXT_WADO_RS), 'the client saw the injected extensions');
  await roundTrip(DIRECT_FHIR, 'rt-direct');
  const [a, b] = await Promise.all(['rt-gw', 'rt-direct'].map((id) => get(`${DIRECT_FHIR}/ImagingStudy/${id}`, { headers: JSON_H })));
  assert.ok(!a.text.includes(EXT_WADO_RS), 'no injected extension was stored');
  assert.equal(a.json.series[0].extension?.[0]?.valueString, 'kept', 'the client\'s own extension was stored');
  assert.equal(JSON.stringify(stored(a.json, 'x')), JSON.stringify(stored(b.json, 'x')), 'stored resources equal, key order included');
  if (hapi) assert.equal(a.json.meta.versionId, b.json.meta.versionId, 'one new version each');
});

test(`[${FHIR_SERVER}] JSON Patch that copies an injected extension stores what a direct patch does`, { skip }, async (t) => {
  await copyOfS1('patch-gw');
  await copyOfS1('patch-direct');
  const read = await get(`${GW_FHIR}/ImagingStudy/patch-gw`, { headers: JSON_H });
  const injected = read.json.series[0].extension.find((e) => e.url === EXT_WADO_RS);
  assert.ok(injected, 'the gateway injected a WADO-RS extension');
  const patch = (withInjected) => JSON.stringify([
    { op: 'replace', path: '/description', value: 'patched' },
    ...(withInjected ? [{ op: 'add', path: '/series/0/extension/-', value: injected }] : []),
  ]);
  const send = (base, id, withInjected) => get(`${base}/ImagingStudy/${id}`, {
    method: 'PATCH', headers: { 'Content-Type': 'application/json-patch+json', Accept: 'application/fhir+json' }, body: patch(withInjected),
  });
  const direct = await send(DIRECT_FHIR, 'patch-direct', false);
  if (direct.status !== 200) { t.skip(`${FHIR_SERVER} answers ${direct.status} to JSON Patch`); return; }
  const gw = await send(GW_FHIR, 'patch-gw', true);
  assert.equal(gw.status, 200, gw.text.slice(0, 300));
  assertNoUpstream(gw, 'PATCH answer');
  const [a, b] = await Promise.all(['patch-gw', 'patch-direct'].map((id) => get(`${DIRECT_FHIR}/ImagingStudy/${id}`, { headers: JSON_H })));
  assert.ok(!a.text.includes(EXT_WADO_RS), 'no injected extension was stored');
  assert.equal(JSON.stringify(stored(a.json, 'x')), JSON.stringify(stored(b.json, 'x')));
});

/** A transaction that writes a Patient and an ImagingStudy referring to it and to an Endpoint, absolutely on `base`. */
function transaction(base, sfx, withInjected) {
  const root = manifest.uidRoot;
  const pat = `tx-pat-${sfx}`;
  const series = { uid: `${root}.95.1`, number: 1, modality: { system: 'http://dicom.nema.org/resources/ontology/DCM', code: 'CT' }, instance: [{ uid: `${root}.95.1.1`, number: 1, sopClass: { system: 'urn:ietf:rfc:3986', code: 'urn:oid:1.2.840.10008.5.1.4.1.1.2' } }] };
  if (withInjected) series.extension = [{ url: EXT_WADO_RS, valueUrl: `${GW_FHIR.replace(/\/fhir$/, '')}/wado-rs/studies/${root}.95/series/${root}.95.1` }];
  return {
    resourceType: 'Bundle', type: 'transaction',
    entry: [
      { fullUrl: `${base}/Patient/${pat}`, resource: { resourceType: 'Patient', id: pat, name: [{ family: 'Transaction' }] }, request: { method: 'PUT', url: `Patient/${pat}` } },
      {
        fullUrl: `${base}/ImagingStudy/tx-is-${sfx}`,
        resource: {
          resourceType: 'ImagingStudy', id: `tx-is-${sfx}`, status: 'available',
          identifier: [{ system: 'urn:dicom:uid', value: `urn:oid:${root}.95` }],
          subject: { reference: `${base}/Patient/${pat}` },
          endpoint: [{ reference: `${base}/Endpoint/ep-a-wado-rs` }],
          series: [series],
        },
        request: { method: 'PUT', url: `ImagingStudy/tx-is-${sfx}` },
      },
    ],
  };
}

test(`[${FHIR_SERVER}] transaction Bundle with public-base references is stored as a direct one`, { skip }, async () => {
  const post = (base, sfx, inj) => get(base, { method: 'POST', headers: WRITE_H, body: JSON.stringify(transaction(base, sfx, inj)) });
  const gw = await post(GW_FHIR, 'gw', true);
  assert.equal(gw.status, 200, gw.text.slice(0, 400));
  assertNoUpstream(gw, 'transaction-response');
  const direct = await post(DIRECT_FHIR, 'direct', false);
  assert.equal(direct.status, 200, direct.text.slice(0, 400));
  if (hapi) {
    for (const e of gw.json.entry) assert.ok(e.response.location.startsWith('Patient/') || e.response.location.startsWith('ImagingStudy/') || e.response.location.startsWith(GW_FHIR), e.response.location);
  }
  const [a, b] = await Promise.all(['gw', 'direct'].map((s) => get(`${DIRECT_FHIR}/ImagingStudy/tx-is-${s}`, { headers: JSON_H })));
  assert.equal(a.status, 200);
  // HAPI stores an absolute reference on its own base as a relative one.
  if (hapi) assert.equal(a.json.subject.reference, 'Patient/tx-pat-gw');
  assert.ok(!a.text.includes(new URL(GW_FHIR).host), `nothing stored names the gateway: ${JSON.stringify(a.json.subject)}`);
  assert.ok(!a.text.includes(EXT_WADO_RS), 'no injected extension was stored');
  const norm = (r) => JSON.stringify(stored(r.json, 'x')).replace(/tx-pat-(gw|direct)/g, 'tx-pat');
  assert.equal(norm(a), norm(b), 'the same resource as a direct transaction stores');
  // Read back through the gateway: the reference is on the public base (or relative), and the Endpoint resolves.
  const viaGw = await get(`${GW_FHIR}/ImagingStudy/tx-is-gw`, { headers: JSON_H });
  assertNoUpstream(viaGw, 'read back');
  assert.ok(viaGw.json.series[0].extension?.some((e) => e.url === EXT_WADO_RS), 'the Endpoint reference resolves: URL injected');
});

test(`[${FHIR_SERVER}] response shapes: _summary, _elements, $everything, HEAD, If-None-Match, XML by Accept`, { skip }, async (t) => {
  const compare = async (path, headers = JSON_H) => {
    const [gw, direct] = await Promise.all([get(GW_FHIR + path, { headers }), get(DIRECT_FHIR + path, { headers })]);
    assert.equal(gw.status, direct.status, path);
    assertNoUpstream(gw, path);
    return { gw, direct };
  };
  for (const path of ['/ImagingStudy/study-s1?_summary=true', '/ImagingStudy/study-s2?_elements=identifier,series',
    '/ImagingStudy?_summary=count', '/ImagingStudy?_elements=identifier&_count=2', '/ImagingStudy/study-s3?_summary=data']) {
    await t.test(path, async () => {
      const { gw, direct } = await compare(path);
      assert.equal(direct.status, 200);
      assert.deepEqual(normalised(asDirect(gw.text)), normalised(JSON.parse(direct.text)));
    });
  }
  await t.test('Patient/$everything', { skip: hapi ? false : 'HAPI-specific operation' }, async () => {
    const { gw, direct } = await compare('/Patient/pat-s1/$everything');
    assert.equal(direct.status, 200);
    assert.ok(gw.text.includes(EXT_WADO_RS), 'URLs injected into the operation Bundle');
    assert.deepEqual(normalised(asDirect(gw.text)), normalised(JSON.parse(direct.text)));
  });
  await t.test('HEAD', async () => {
    const [gw, direct] = await Promise.all([get(`${GW_FHIR}/Patient/pat-s1`, { method: 'HEAD' }), get(`${DIRECT_FHIR}/Patient/pat-s1`, { method: 'HEAD' })]);
    assert.equal(gw.status, direct.status);
    assertNoUpstream(gw, 'HEAD');
    assert.equal(gw.headers.get('etag'), direct.headers.get('etag'));
  });
  await t.test('If-None-Match: 304', async (st) => {
    const read = await get(`${GW_FHIR}/ImagingStudy/study-s1`, { headers: JSON_H });
    const etag = read.headers.get('etag');
    if (!etag) { st.skip(`${FHIR_SERVER} sends no ETag`); return; }
    const r = await get(`${GW_FHIR}/ImagingStudy/study-s1`, { headers: { ...JSON_H, 'If-None-Match': etag } });
    const d = await get(`${DIRECT_FHIR}/ImagingStudy/study-s1`, { headers: { ...JSON_H, 'If-None-Match': etag } });
    assert.equal(r.status, d.status);
    if (hapi) assert.equal(r.status, 304);
    assertNoUpstream(r, '304');
  });
  await t.test('Accept: application/fhir+xml passes through', { skip: hapi ? false : 'Medplum answers JSON' }, async () => {
    const { gw, direct } = await compare('/ImagingStudy/study-s1', { Accept: 'application/fhir+xml' });
    assert.match(direct.contentType, /xml/);
    assert.equal(gw.text, direct.text);
  });
});
