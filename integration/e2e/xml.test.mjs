// End-to-end: FHIR XML answers carry the public base too (issue 14).
//
// The stack's Caddyfile sends the FHIR server its own address as Host, so
// HAPI writes paging links, fullUrls and Location on http://127.0.0.1:8080/fhir
// in XML as in JSON. Through the gateway no byte of that address may be left
// in an XML answer, and the rest of the document must be the server's own:
// a page of a stored search (the same page whoever asks) is fetched both
// through the gateway and directly, and the two must be the same bytes once
// the bases are swapped back.
//
// Medplum's in-memory server does not speak XML: it answers JSON to
// _format=xml and to Accept: application/fhir+xml (the test checks that
// first and skips with what it answered).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FHIR_SERVER, GW_FHIR, DIRECT_FHIR, skip, get } from './lib/env.mjs';

const hapi = FHIR_SERVER === 'hapi';
const UPSTREAM_HOST = new URL(DIRECT_FHIR).host;
const XML_CT = /^application\/fhir\+xml/;

/** The value of the url of the Bundle.link with that relation, unescaped. */
function linkUrl(xml, relation) {
  const re = new RegExp(`<link>\\s*<relation value="${relation}"/>\\s*<url value="([^"]*)"/>\\s*</link>`);
  const m = xml.match(re);
  return m && m[1].replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

const fullUrls = (xml) => [...xml.matchAll(/<fullUrl value="([^"]*)"\/>/g)].map((m) => m[1]);

function assertNoUpstream(r, what) {
  assert.ok(!r.text.includes(UPSTREAM_HOST), `${what}: body names the upstream ${UPSTREAM_HOST}: ${r.text.slice(0, 400)}`);
  for (const [k, v] of r.headers) assert.ok(!v.includes(UPSTREAM_HOST), `${what}: header ${k}: ${v}`);
}

for (const [how, query, headers] of [
  ['_format=xml', '&_format=xml', {}],
  ['Accept: application/fhir+xml', '', { Accept: 'application/fhir+xml' }],
]) {
  test(`[${FHIR_SERVER}] XML search (${how}) through the gateway: no upstream base, next link followed`, { skip }, async (t) => {
    const search = `/Patient?_count=2&_sort=_id${query}`;
    const direct = await get(DIRECT_FHIR + search, { headers });
    assert.equal(direct.status, 200);
    if (!hapi && !XML_CT.test(direct.contentType)) {
      t.skip(`${FHIR_SERVER} answers ${direct.contentType} to ${how}: it does not speak XML`);
      return;
    }
    assert.match(direct.contentType, XML_CT);
    // What makes the test meaningful: the server wrote its own base into the XML.
    const directNext = linkUrl(direct.text, 'next');
    assert.ok(directNext?.startsWith(`${DIRECT_FHIR}?_getpages=`), `the server's next link: ${directNext}`);
    assert.ok(direct.text.includes('&amp;'), 'the server escapes & in its links');

    const first = await get(GW_FHIR + search, { headers });
    assert.equal(first.status, 200);
    assert.match(first.contentType, XML_CT);
    assertNoUpstream(first, 'first page');
    assert.match(first.text, /^<\?xml|^<Bundle xmlns="http:\/\/hl7.org\/fhir">/);
    const self = linkUrl(first.text, 'self');
    assert.ok(self?.startsWith(`${GW_FHIR}/Patient?`), `self link ${self}`);
    const next = linkUrl(first.text, 'next');
    assert.ok(next?.startsWith(`${GW_FHIR}?_getpages=`), `next link ${next}`);
    const urls1 = fullUrls(first.text);
    assert.equal(urls1.length, 2, 'two entries on the first page');
    for (const u of urls1) assert.match(u, new RegExp(`^${GW_FHIR.replace(/[.]/g, '\\.')}/Patient/[^/]+$`));

    // Follow the next link through the gateway, as a client does.
    const second = await get(next, { headers });
    assert.equal(second.status, 200, `GET ${next}`);
    assert.match(second.contentType, XML_CT);
    assertNoUpstream(second, 'second page');
    const urls2 = fullUrls(second.text);
    assert.ok(urls2.length > 0, 'the second page has entries');
    for (const u of urls2) assert.ok(u.startsWith(`${GW_FHIR}/Patient/`), `fullUrl ${u}`);
    assert.deepEqual(urls2.filter((u) => urls1.includes(u)), [], 'the second page is another page');
    for (const rel of ['self', 'previous', 'prev', 'next']) {
      const u = linkUrl(second.text, rel);
      if (u) assert.ok(u.startsWith(GW_FHIR), `second page ${rel} link ${u}`);
    }

    // The same stored page asked directly: the same bytes but for the base.
    const same = await get(next.replace(GW_FHIR, DIRECT_FHIR), { headers });
    assert.equal(same.status, 200);
    assert.ok(same.text.includes(DIRECT_FHIR), 'the direct page names the server');
    assert.equal(second.text, same.text.split(DIRECT_FHIR).join(GW_FHIR), 'byte for byte the server\'s page, bases swapped');
  });
}

test(`[${FHIR_SERVER}] XML answers gzipped by the server, and XML errors: public base`, { skip }, async (t) => {
  const probe = await get(`${DIRECT_FHIR}/Patient?_count=1`, { headers: { Accept: 'application/fhir+xml' } });
  if (!hapi && !XML_CT.test(probe.contentType)) {
    t.skip(`${FHIR_SERVER} answers ${probe.contentType} to Accept: application/fhir+xml: it does not speak XML`);
    return;
  }
  // gzip from the server, decompressed and rebased as it streams
  const gz = await get(`${GW_FHIR}/Patient?_count=2&_format=xml`, { headers: { 'Accept-Encoding': 'gzip' } });
  assert.equal(gz.status, 200);
  assertNoUpstream(gz, 'gzip page');
  assert.ok(linkUrl(gz.text, 'next')?.startsWith(`${GW_FHIR}?_getpages=`), 'next link on the public base');
  // an OperationOutcome in XML streams through with its status
  const missing = await get(`${GW_FHIR}/Patient/xml-does-not-exist?_format=xml`);
  assert.equal(missing.status, 404);
  assert.match(missing.contentType, XML_CT);
  assertNoUpstream(missing, '404');
});

test(`[${FHIR_SERVER}] XML written back with public-base references is stored as a direct one`, { skip }, async (t) => {
  const probe = await get(`${DIRECT_FHIR}/Patient?_count=1`, { headers: { Accept: 'application/fhir+xml' } });
  if (!hapi && !XML_CT.test(probe.contentType)) {
    t.skip(`${FHIR_SERVER} answers ${probe.contentType} to Accept: application/fhir+xml: it does not speak XML`);
    return;
  }
  const target = (await get(`${DIRECT_FHIR}/Patient?_count=1&_sort=_id`, { headers: { Accept: 'application/fhir+json' } })).json.entry[0].resource.id;
  // What a client that read XML through the gateway writes back: references on the gateway's base.
  const patient = (id, base) => `<Patient xmlns="http://hl7.org/fhir"><id value="${id}"/>` +
    `<name><family value="XmlWriteBack"/></name><link><other><reference value="${base}/Patient/${target}"/></other><type value="seealso"/></link></Patient>`;
  const put = async (fhirBase, id, refBase) => {
    const r = await get(`${fhirBase}/Patient/${id}`, {
      method: 'PUT', headers: { 'Content-Type': 'application/fhir+xml', Accept: 'application/fhir+xml' }, body: patient(id, refBase),
    });
    assert.ok(r.status === 200 || r.status === 201, `PUT ${fhirBase}/Patient/${id}: ${r.status} ${r.text.slice(0, 300)}`);
    return r;
  };
  const viaGw = await put(GW_FHIR, 'xml-wb-gw', GW_FHIR);
  assertNoUpstream(viaGw, 'XML PUT answer');
  await put(DIRECT_FHIR, 'xml-wb-direct', DIRECT_FHIR);
  const stored = async (id) => (await get(`${DIRECT_FHIR}/Patient/${id}`, { headers: { Accept: 'application/fhir+json' } })).json;
  const [a, b] = [await stored('xml-wb-gw'), await stored('xml-wb-direct')];
  assert.equal(b.link[0].other.reference, `Patient/${target}`, 'HAPI stores its own base as a relative reference');
  assert.equal(a.link[0].other.reference, b.link[0].other.reference, 'stored as a direct write stores it');
});
