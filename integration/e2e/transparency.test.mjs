// End-to-end: what the gateway must NOT change. The same request is sent to the
// gateway's /fhir and straight to the FHIR server, and the answers are compared.
//
// Honest notes on what is compared:
// - Reads (JSON and XML) and error OperationOutcomes: the bodies byte for byte.
// - Searches: HAPI builds absolute URLs (Bundle.link, entry.fullUrl, and the
//   Content-Location header of a read) from the Host
//   it was called with, so through the gateway they name http://127.0.0.1:8000/fhir
//   and directly http://127.0.0.1:8080/fhir. That base is swapped in the gateway's
//   body before comparing. HAPI also gives each search execution its own Bundle.id
//   and Bundle.meta.lastUpdated (the id also appears in its paging links as
//   _getpages=<id>); those are dropped or masked on both sides. Everything
//   else, entries included, must be equal (parsed JSON, key order compared too).
//   Medplum has no links, fullUrls or Bundle.id, so nothing is swapped for it.
// - ImagingStudy: the gateway's body with the injected extensions removed must be
//   the FHIR server's body.
// - Medplum's in-memory server ignores _format=xml and answers JSON; for it the XML
//   read of a Patient is still compared (it shows the query passes unchanged) and
//   the XML read of an ImagingStudy is skipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { gunzipSync } from 'node:zlib';
import {
  FHIR_SERVER, GW_FHIR, DIRECT_FHIR, EXT_WADO_RS, EXT_WADO_URI, manifest, skip, get,
} from './lib/env.mjs';

const both = async (path, headers = {}) => {
  const [gw, direct] = await Promise.all([get(GW_FHIR + path, { headers }), get(DIRECT_FHIR + path, { headers })]);
  return { gw, direct };
};
const JSON_ACCEPT = { Accept: 'application/fhir+json' };

test(`[${FHIR_SERVER}] Patient read: identical body, type and version headers`, { skip }, async () => {
  for (const st of manifest.studies) {
    const { gw, direct } = await both(`/Patient/${st.patient.id}`, JSON_ACCEPT);
    assert.equal(direct.status, 200);
    assert.equal(gw.status, direct.status);
    assert.equal(gw.text, direct.text, `Patient/${st.patient.id}: body`);
    assert.equal(gw.contentType, direct.contentType);
    for (const h of ['etag', 'last-modified']) assert.equal(gw.headers.get(h), direct.headers.get(h), `header ${h}`);
    // HAPI's Content-Location is absolute, built from the Host it was called with
    const loc = gw.headers.get('content-location');
    assert.equal(loc && loc.split(GW_FHIR).join(DIRECT_FHIR), direct.headers.get('content-location'), 'Content-Location (base swapped)');
  }
});

test(`[${FHIR_SERVER}] XML read (_format=xml): identical body`, { skip }, async (t) => {
  await t.test('Patient', async () => {
    const { gw, direct } = await both('/Patient/pat-s2?_format=xml');
    assert.equal(direct.status, 200);
    assert.equal(gw.status, 200);
    assert.equal(gw.text, direct.text);
    assert.equal(gw.contentType, direct.contentType);
    if (FHIR_SERVER === 'hapi') assert.match(direct.text, /^<Patient xmlns="http:\/\/hl7.org\/fhir">/);
  });
  await t.test('ImagingStudy (not JSON: passes through unrewritten)',
    { skip: FHIR_SERVER === 'medplum' ? 'Medplum answers JSON to _format=xml' : false }, async () => {
      const { gw, direct } = await both('/ImagingStudy/study-s1?_format=xml');
      assert.equal(direct.status, 200);
      assert.match(direct.contentType, /xml/);
      assert.equal(gw.text, direct.text);
      assert.ok(!gw.text.includes(EXT_WADO_RS), 'no extension injected into XML');
    });
});

test(`[${FHIR_SERVER}] 404 OperationOutcome: identical status and body`, { skip }, async () => {
  for (const path of ['/Patient/does-not-exist', '/ImagingStudy/does-not-exist']) {
    const { gw, direct } = await both(path, JSON_ACCEPT);
    assert.equal(direct.status, 404, `${path} direct`);
    assert.equal(gw.status, 404, `${path} gateway`);
    assert.equal(direct.json?.resourceType, 'OperationOutcome');
    assert.equal(gw.text, direct.text, `${path}: body`);
  }
});

/** Parsed Bundle with the per-execution fields dropped (see the notes at the top). */
function normalisedBundle(text, fromBase) {
  const swapped = fromBase ? text.split(GW_FHIR).join(DIRECT_FHIR) : text;
  const b = JSON.parse(swapped);
  // HAPI's paging links name the search execution: ?_getpages=<Bundle.id>&...
  if (b.id) for (const l of b.link || []) l.url = l.url.split(b.id).join('<search-id>');
  delete b.id;
  if (b.meta) delete b.meta.lastUpdated;
  if (b.meta && Object.keys(b.meta).length === 0) delete b.meta;
  return b;
}

test(`[${FHIR_SERVER}] Patient search: the same Bundle`, { skip }, async () => {
  for (const q of ['/Patient?_count=2', '/Patient?family=Synthetic&_sort=birthdate', `/Patient?_id=${manifest.studies.map((s) => s.patient.id).join(',')}`]) {
    const { gw, direct } = await both(q, JSON_ACCEPT);
    assert.equal(direct.status, 200, q);
    assert.equal(gw.status, 200, q);
    const g = normalisedBundle(gw.text, true);
    const d = normalisedBundle(direct.text, false);
    assert.ok((d.entry || []).length > 0, `${q}: finds Patients`);
    assert.deepEqual(g, d, `${q}: Bundle`);
    assert.equal(JSON.stringify(g.entry), JSON.stringify(d.entry), `${q}: entries, key order included`);
  }
});

/** Drop the gateway's own extensions (and an emptied extension list) from an ImagingStudy. */
function withoutInjected(is) {
  const strip = (el) => {
    if (!el.extension) return;
    el.extension = el.extension.filter((e) => e.url !== EXT_WADO_RS && e.url !== EXT_WADO_URI);
    if (el.extension.length === 0) delete el.extension;
  };
  for (const se of is.series || []) {
    strip(se);
    for (const i of se.instance || []) strip(i);
  }
  return is;
}

test(`[${FHIR_SERVER}] ImagingStudy read: everything but the injected extensions is unchanged`, { skip }, async () => {
  for (const st of manifest.studies) {
    const path = `/ImagingStudy/study-${st.scenario.toLowerCase()}`;
    const { gw, direct } = await both(path, JSON_ACCEPT);
    assert.equal(gw.status, 200);
    assert.ok(gw.text.includes(EXT_WADO_RS), `${path}: the gateway did inject`);
    assert.equal(JSON.stringify(withoutInjected(gw.json)), JSON.stringify(direct.json), `${path}: the rest, key order included`);
    assert.equal(gw.headers.get('etag'), direct.headers.get('etag'), `${path}: ETag`);
  }
});

test(`[${FHIR_SERVER}] gzip: FHIR JSON is compressed on request and decompresses to the server's body`, { skip }, async () => {
  // (Caddy compresses bodies of 512 bytes or more: a search, not a single Patient)
  const u = new URL(`${GW_FHIR}/Patient?_count=4`);
  const res = await new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, headers: { 'Accept-Encoding': 'gzip', ...JSON_ACCEPT } }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => resolve({ status: r.statusCode, headers: r.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-encoding'], 'gzip', `Content-Type ${res.headers['content-type']} is compressed`);
  const direct = await get(`${DIRECT_FHIR}/Patient?_count=4`, { headers: JSON_ACCEPT });
  assert.deepEqual(normalisedBundle(gunzipSync(res.body).toString('utf8'), true), normalisedBundle(direct.text, false));
});
