// The FHIR side under SMART Imaging Access: HAPI enforces the tokens itself;
// the gateway adds the guide's rule that a patient's token searches
// ImagingStudy for that patient only (403 otherwise, not an empty Bundle),
// and advertises smart-imaging-access in the FHIR base's smart-configuration.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from 'fhir-kit-client';
import { GW_FHIR, DIRECT_FHIR, EXT_WADO_RS, ext, studyUidOf, get } from '../lib/env.mjs';
import { AUTH_URL } from '../lib/smart.mjs';
import { skip, tokens, bearer, S1, S2, S5 } from './setup.mjs';

let tok;
before(async () => {
  if (!skip) tok = await tokens();
});

const fhirAs = (token) => new Client({ baseUrl: GW_FHIR, customHeaders: bearer(token) });

/** The HTTP status fhir-kit-client failed with (or 200). */
async function statusOf(promise) {
  try {
    await promise;
    return 200;
  } catch (e) {
    return e.response?.status ?? e.status ?? -1;
  }
}

test('HAPI itself refuses requests without a valid token, directly and through the gateway', { skip }, async () => {
  for (const base of [DIRECT_FHIR, GW_FHIR]) {
    const r = await get(`${base}/ImagingStudy?patient=pat-s2`, { headers: { Accept: 'application/fhir+json' } });
    assert.equal(r.status, 401, `${base}: ${r.status}`);
    const bad = await get(`${base}/ImagingStudy?patient=pat-s2`, { headers: { Accept: 'application/fhir+json', Authorization: 'Bearer nope' } });
    assert.equal(bad.status, 401, `${base} with an unknown token: ${bad.status}`);
  }
});

test("a patient's token: ImagingStudy searches must name that patient", { skip }, async () => {
  const bob = fhirAs(tok.bob);
  for (const [what, params] of [
    ['another patient', { patient: 'pat-s1' }],
    ['another patient as a reference', { patient: 'Patient/pat-s1' }],
    ['no patient', {}],
    ['an identifier only', { identifier: `urn:oid:${S1.studyInstanceUID}` }],
    ['two patients', { patient: 'pat-s2,pat-s1' }],
  ]) {
    assert.equal(await statusOf(bob.search({ resourceType: 'ImagingStudy', searchParams: params })), 403, what);
  }
  const mine = await bob.search({ resourceType: 'ImagingStudy', searchParams: { patient: 'Patient/pat-s2', identifier: `urn:oid:${S2.studyInstanceUID}` } });
  assert.deepEqual(mine.entry.map((e) => studyUidOf(e.resource)), [S2.studyInstanceUID], 'patient + identifier, as the guide has it');
  const since = await bob.search({ resourceType: 'ImagingStudy', searchParams: { patient: 'pat-s2', _lastUpdated: 'gt2000-01-01' } });
  assert.deepEqual(since.entry.map((e) => studyUidOf(e.resource)).sort(), [S2.studyInstanceUID, S5.studyInstanceUID].sort(), 'patient + _lastUpdated');
  const se = mine.entry[0].resource.series[0];
  assert.equal(ext(se, EXT_WADO_RS).length, 1, 'with the injected URL');
});

test("Bob's proxy does not see the restricted study; a clinician sees every study", { skip }, async () => {
  const proxy = await fhirAs(tok.bobProxy).search({ resourceType: 'ImagingStudy', searchParams: { patient: 'pat-s2' } });
  assert.deepEqual(proxy.entry.map((e) => studyUidOf(e.resource)), [S2.studyInstanceUID]);
  const bob = await fhirAs(tok.bob).search({ resourceType: 'ImagingStudy', searchParams: { patient: 'pat-s2' } });
  assert.deepEqual(bob.entry.map((e) => studyUidOf(e.resource)).sort(), [S2.studyInstanceUID, S5.studyInstanceUID].sort());
  const all = await fhirAs(tok.doctor).search({ resourceType: 'ImagingStudy', searchParams: { _count: 50 } });
  assert.equal(all.entry.length, 5, 'user/ scopes are not held to a patient');
});

test('.well-known/smart-configuration lists smart-imaging-access and the authorization server', { skip }, async () => {
  const r = await get(`${GW_FHIR}/.well-known/smart-configuration`, { headers: { Accept: 'application/json' } });
  assert.equal(r.status, 200, r.text.slice(0, 300));
  assert.ok(r.json.capabilities.includes('smart-imaging-access'), JSON.stringify(r.json.capabilities));
  assert.ok(r.json.capabilities.includes('http://fhir.org/argonaut/smart-imaging/capabilities/app-launch'));
  assert.equal(r.json.token_endpoint, `${AUTH_URL}/token`);
  assert.equal(r.json.authorization_endpoint, `${AUTH_URL}/auth`);
  assert.ok(r.json.grant_types_supported.includes('authorization_code'));
});
