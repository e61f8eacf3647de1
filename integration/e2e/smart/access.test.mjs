// Access to images follows SMART tokens, end to end: a real authorization server,
// HAPI enforcing the same tokens with its own interceptors (one of Bob's studies
// hidden from his proxy by a consent rule there), two Orthancs, and real clients
// carrying real tokens: fhir-kit-client for FHIR, dicomweb-client and fetch for
// DICOMweb and WADO-URI.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from 'fhir-kit-client';
import { makeClient, toBuffer, sha256, instances, tagValue, fetchMultipart } from '../lib/dicomweb.mjs';
import { GW_FHIR, GW_DICOMWEB, GATEWAY, EXT_WADO_RS, EXT_WADO_URI, ARCHIVE_HOSTS, manifest, ext, studyUidOf } from '../lib/env.mjs';
import { skip, tokens, gw, bearer, S1, S2, S5 } from './setup.mjs';

let tok;
before(async () => {
  if (!skip) tok = await tokens();
});

const fhirAs = (token) => new Client({ baseUrl: GW_FHIR, customHeaders: bearer(token) });
const dwAs = (token) => makeClient(GW_DICOMWEB, { headers: bearer(token) });
const bySop = new Map(instances(manifest).map((i) => [i.sopInstanceUID, i]));
const uids = (arr) => arr.map((ds) => tagValue(ds, '0020000D')).sort();

test("Bob finds his studies through FHIR and retrieves every instance through the injected URLs, from both archives", { skip }, async () => {
  const bundle = await fhirAs(tok.bob).search({ resourceType: 'ImagingStudy', searchParams: { patient: 'pat-s2', _include: 'ImagingStudy:endpoint' } });
  const studies = bundle.entry.map((e) => e.resource).filter((r) => r.resourceType === 'ImagingStudy');
  assert.deepEqual(studies.map(studyUidOf).sort(), [S2.studyInstanceUID, S5.studyInstanceUID].sort(), "Bob's two studies");
  let n = 0;
  const archives = new Set();
  for (const is of studies) {
    for (const se of is.series) {
      for (const inst of se.instance) {
        const [rs] = ext(inst, EXT_WADO_RS);
        assert.ok(rs?.valueUrl.startsWith(GW_DICOMWEB + '/'), `instance ${inst.uid} has a gateway WADO-RS URL`);
        const r = await fetchMultipart(rs.valueUrl, { headers: bearer(tok.bob) });
        assert.equal(r.status, 200, `${rs.valueUrl}: ${r.status} ${r.body?.toString().slice(0, 200)}`);
        const want = bySop.get(inst.uid);
        assert.equal(sha256(r.parts[0].body), want.sha256, `instance ${inst.uid}: the bytes that were stored`);
        archives.add(want.archive);
        n++;
        const [uri] = ext(inst, EXT_WADO_URI);
        if (uri) {
          const w = await gw(uri.valueUrl.slice(GATEWAY.length), tok.bob);
          assert.equal(w.status, 200, `WADO-URI ${inst.uid}`);
          assert.equal(sha256(w.buf), want.sha256, `WADO-URI ${inst.uid}: the stored bytes`);
        }
      }
    }
  }
  assert.equal(n, 6, 'S2 (4 instances) and S5 (2)');
  assert.deepEqual([...archives].sort(), ['a', 'b'], 'from both archives');
});

test("Bob retrieves his split study whole, and its metadata names no archive", { skip }, async () => {
  const parts = (await dwAs(tok.bob).retrieveStudy({ studyInstanceUID: S2.studyInstanceUID })).map(toBuffer);
  const want = instances(manifest, { scenario: 'S2' }).map((i) => i.sha256).sort();
  assert.deepEqual(parts.map(sha256).sort(), want, 'the four instances of S2, two from each archive');
  const meta = await dwAs(tok.bob).retrieveStudyMetadata({ studyInstanceUID: S2.studyInstanceUID });
  assert.equal(meta.length, 4);
  const text = JSON.stringify(meta);
  for (const h of ARCHIVE_HOSTS) assert.ok(!text.includes(h), `metadata mentions ${h}`);
});

test('a full-study retrieve with the Accept the guide requires (transfer-syntax=*), the split study from both archives', { skip }, async () => {
  const r = await fetchMultipart(`${GW_DICOMWEB}/studies/${S2.studyInstanceUID}`, {
    accept: 'multipart/related; type=application/dicom; transfer-syntax=*', headers: bearer(tok.bob),
  });
  assert.equal(r.status, 200, `${r.status} ${r.body?.toString().slice(0, 200)}`);
  const want = instances(manifest, { scenario: 'S2' }).map((i) => i.sha256).sort();
  assert.deepEqual(r.parts.map((p) => sha256(p.body)).sort(), want);
});

test('QIDO-RS shows each token only the studies it may see', { skip }, async () => {
  assert.deepEqual(uids(await dwAs(tok.bob).searchForStudies()), [S2.studyInstanceUID, S5.studyInstanceUID].sort());
  assert.deepEqual(uids(await dwAs(tok.bobProxy).searchForStudies()), [S2.studyInstanceUID], "the proxy does not see Bob's restricted study");
  assert.deepEqual(uids(await dwAs(tok.alice).searchForStudies()), [S1.studyInstanceUID]);
  const all = manifest.studies.map((s) => s.studyInstanceUID).sort();
  assert.deepEqual(uids(await dwAs(tok.doctor).searchForStudies()), all, 'a clinician (user/ scope) sees what HAPI shows him: all');
  const none = await gw('/wado-rs/studies', tok.system, { Accept: 'application/dicom+json' });
  assert.equal(none.status, 200);
  assert.deepEqual(none.json, [], 'a system token sees nothing');
});

test('every refusal is the same 403, and nothing reaches the client', { skip }, async () => {
  const s1se = S1.series[0].seriesInstanceUID;
  const s1inst = S1.series[0].instances[0].sopInstanceUID;
  const s2se = S2.series[0];
  const cases = [
    ['Alice\'s study', `/wado-rs/studies/${S1.studyInstanceUID}`, tok.bob],
    ['Alice\'s metadata', `/wado-rs/studies/${S1.studyInstanceUID}/metadata`, tok.bob],
    ['Alice\'s frame', `/wado-rs/studies/${S1.studyInstanceUID}/series/${s1se}/instances/${s1inst}/frames/1`, tok.bob],
    ['a made-up study', '/wado-rs/studies/1.2.826.0.1.3680043.10.1234.777', tok.bob],
    ["the restricted study, to Bob's proxy", `/wado-rs/studies/${S5.studyInstanceUID}`, tok.bobProxy],
    ['a series of another study under an allowed study', `/wado-rs/studies/${S2.studyInstanceUID}/series/${s1se}`, tok.bob],
    ['an instance of another study under an allowed series', `/wado-rs/studies/${S2.studyInstanceUID}/series/${s2se.seriesInstanceUID}/instances/${s1inst}`, tok.bob],
    ['WADO-URI crossing studies', `/wado?requestType=WADO&studyUID=${S2.studyInstanceUID}&seriesUID=${s1se}&objectUID=${s1inst}&contentType=application/dicom`, tok.bob],
    ['WADO-URI of Alice\'s object', `/wado?requestType=WADO&studyUID=${S1.studyInstanceUID}&seriesUID=${s1se}&objectUID=${s1inst}&contentType=application/dicom`, tok.bob],
    ['a token without an imaging scope', `/wado-rs/studies/${S2.studyInstanceUID}`, tok.observations],
    ['a system token', `/wado-rs/studies/${S2.studyInstanceUID}`, tok.system],
  ];
  let body;
  for (const [what, path, token] of cases) {
    const r = await gw(path, token, { Accept: 'multipart/related; type="application/dicom"' });
    assert.equal(r.status, 403, `${what}: ${r.status} ${r.text.slice(0, 200)}`);
    assert.equal(r.json?.status, 403, `${what}: JSON error body`);
    body ??= r.text;
    assert.equal(r.text, body, `${what}: the same body as every other refusal`);
    assert.ok(!r.headers.get('content-type').includes('dicom'), `${what}: no DICOM data`);
  }
  for (const u of manifest.studies.map((s) => s.studyInstanceUID)) assert.ok(!body.includes(u), 'the 403 names no study');
});

test('the same paths work for whom they belong to', { skip }, async () => {
  const s2se = S2.series[1];
  for (const [what, path, token] of [
    ["Bob's series in archive b", `/wado-rs/studies/${S2.studyInstanceUID}/series/${s2se.seriesInstanceUID}/metadata`, tok.bob],
    ["Bob's proxy, Bob's split study", `/wado-rs/studies/${S2.studyInstanceUID}/metadata`, tok.bobProxy],
    ["Alice's study, to Alice", `/wado-rs/studies/${S1.studyInstanceUID}/metadata`, tok.alice],
    ["Alice's study, to a clinician", `/wado-rs/studies/${S1.studyInstanceUID}/metadata`, tok.doctor],
    ["Bob's restricted study, to Bob", `/wado-rs/studies/${S5.studyInstanceUID}/metadata`, tok.bob],
  ]) {
    const r = await gw(path, token, { Accept: 'application/dicom+json' });
    assert.equal(r.status, 200, `${what}: ${r.status} ${r.text.slice(0, 200)}`);
    assert.match(r.headers.get('cache-control') || '', /\bprivate\b/, `${what}: Cache-Control private`);
  }
});

test('no token, a malformed one, an unknown one: 401 with a Bearer challenge', { skip }, async () => {
  for (const [what, headers] of [
    ['no token', {}],
    ['Basic credentials', { Authorization: 'Basic Ym9iOmJvYg==' }],
    ['an unknown token', { Authorization: 'Bearer 0123456789abcdef' }],
  ]) {
    for (const path of [`/wado-rs/studies/${S2.studyInstanceUID}`, `/wado?requestType=WADO&studyUID=${S2.studyInstanceUID}&seriesUID=1.2&objectUID=1.2.3`]) {
      const r = await gw(path, undefined, headers);
      assert.equal(r.status, 401, `${what} ${path}: ${r.status}`);
      assert.match(r.headers.get('www-authenticate') || '', /^Bearer/, `${what}: WWW-Authenticate`);
      assert.equal(r.json?.status, 401);
    }
  }
});

test('a browser app: preflight without a token, Access-Control-Allow-Origin on 200, 401 and 403', { skip }, async () => {
  const origin = 'http://viewer.example.org';
  const pre = await fetch(`${GW_DICOMWEB}/studies/${S2.studyInstanceUID}/metadata`, {
    method: 'OPTIONS',
    headers: { Origin: origin, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'authorization' },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), '*');
  assert.match(pre.headers.get('access-control-allow-headers') || '', /authorization/i);
  for (const [token, status] of [[tok.bob, 200], [undefined, 401], [tok.alice, 403]]) {
    const r = await gw(`/wado-rs/studies/${S2.studyInstanceUID}/metadata`, token, { Origin: origin, Accept: 'application/dicom+json' });
    assert.equal(r.status, status);
    assert.equal(r.headers.get('access-control-allow-origin'), '*', `${status}: ACAO`);
  }
});
