// End-to-end, as a FHIR client would: fhir-kit-client against the GATEWAY's /fhir.
// The data was seeded THROUGH the gateway (integration/run-e2e.sh: stack.sh seed);
// the first test seeds it again through the gateway (PUTs with client ids are
// idempotent) so that this file also stands alone.
// Run by integration/run-e2e.sh, once with FHIR_SERVER=hapi and once with medplum.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { seed } from '../data/seed-fhir.mjs';
import {
  FHIR_SERVER, GATEWAY, GW_FHIR, GW_DICOMWEB, GW_WADO_URI, EXT_WADO_RS, EXT_WADO_URI, DIRECT_FHIR,
  manifest, byScenario, skip, fhirClient, ext, studyUidOf, putResource, foreignResources,
} from './lib/env.mjs';

const client = fhirClient();
const scenarioIds = Object.fromEntries(manifest.studies.map((s) => [s.scenario, `study-${s.scenario.toLowerCase()}`]));

/** Checks the extensions of one ImagingStudy against its manifest study; returns counts. */
function checkStudyExtensions(is, st) {
  const uid = st.studyInstanceUID;
  assert.equal(studyUidOf(is), uid, `${is.id}: identifier`);
  const hasWadoUri = st.fhir.studyEndpoints.includes('dicom-wado-uri');
  let series = 0; let instances = 0;
  for (const mse of st.series) {
    const se = is.series.find((s) => s.uid === mse.seriesInstanceUID);
    assert.ok(se, `${is.id}: series ${mse.seriesInstanceUID} present`);
    const seURL = `${GW_DICOMWEB}/studies/${uid}/series/${se.uid}`;
    const rs = ext(se, EXT_WADO_RS);
    assert.equal(rs.length, 1, `${is.id} series ${se.uid}: exactly one wado-rs extension, got ${JSON.stringify(se.extension)}`);
    assert.equal(rs[0].valueUrl, seURL, 'series WADO-RS URL');
    assert.ok(rs[0].valueUrl.startsWith(GATEWAY + '/'), 'series URL on the gateway base');
    assert.equal(ext(se, EXT_WADO_URI).length, 0, 'no WADO-URI extension on a series');
    series++;
    for (const mi of mse.instances) {
      const inst = se.instance.find((i) => i.uid === mi.sopInstanceUID);
      assert.ok(inst, `instance ${mi.sopInstanceUID} present`);
      const irs = ext(inst, EXT_WADO_RS);
      assert.equal(irs.length, 1, `instance ${inst.uid}: one wado-rs extension`);
      assert.equal(irs[0].valueUrl, `${seURL}/instances/${inst.uid}`);
      const iuri = ext(inst, EXT_WADO_URI);
      if (hasWadoUri) {
        assert.equal(iuri.length, 1, `instance ${inst.uid}: one wado-uri extension`);
        assert.equal(iuri[0].valueUrl, `${GW_WADO_URI}?requestType=WADO&studyUID=${uid}&seriesUID=${se.uid}` +
          `&objectUID=${inst.uid}&contentType=application/dicom`);
      } else {
        assert.equal(iuri.length, 0, `instance ${inst.uid}: no wado-uri extension (no WADO-URI endpoint)`);
      }
      instances++;
    }
  }
  // nothing added at the study level
  assert.equal(ext(is, EXT_WADO_RS).length + ext(is, EXT_WADO_URI).length, 0, 'no extension on the study itself');
  return { series, instances };
}

before(async () => {
  if (skip) return;
  // the "foreign" studies (endpoints where no archive lives) are part of the data set
  for (const r of foreignResources().resources) await putResource(GW_FHIR, r);
});

test(`[${FHIR_SERVER}] seeding through the gateway: every PUT of seed-fhir.mjs answers 200/201`, { skip }, async () => {
  const summary = await seed({ fhir: GW_FHIR, manifest, quiet: true });
  assert.equal(summary.fhir, GW_FHIR);
  const statuses = Object.entries(summary.statuses);
  assert.equal(statuses.length, 4 + manifest.studies.length * 2, 'Endpoints + Patients + ImagingStudies');
  for (const [ref, status] of statuses) assert.ok(status === 200 || status === 201, `${ref}: ${status}`);
  // The PUT answers came back through fhir_rewrite; an ImagingStudy read returns what was written.
  const is = await client.read({ resourceType: 'ImagingStudy', id: 'study-s1' });
  assert.equal(is.description, byScenario.S1.description);
});

test(`[${FHIR_SERVER}] fhir-kit-client read of each ImagingStudy: WADO-RS/WADO-URI URLs on every series and instance`, { skip }, async (t) => {
  let total = { series: 0, instances: 0 };
  for (const st of manifest.studies) {
    await t.test(`${st.scenario} ${st.description}`, async () => {
      const is = await client.read({ resourceType: 'ImagingStudy', id: scenarioIds[st.scenario] });
      assert.equal(is.resourceType, 'ImagingStudy');
      const n = checkStudyExtensions(is, st);
      total = { series: total.series + n.series, instances: total.instances + n.instances };
    });
  }
  assert.deepEqual(total, { series: 7, instances: 15 }, 'all 7 series and 15 instances carry URLs');
});

test(`[${FHIR_SERVER}] search ImagingStudy?_count=2, every page followed: all studies with their URLs`, { skip }, async () => {
  const seen = new Map();
  let pages = 0;
  let bundle = await client.search({ resourceType: 'ImagingStudy', searchParams: { _count: 2 } });
  for (;;) {
    pages++;
    assert.equal(bundle.resourceType, 'Bundle');
    assert.equal(bundle.type, 'searchset');
    assert.ok((bundle.entry || []).length <= 2, `page ${pages}: at most _count entries`);
    for (const e of bundle.entry || []) {
      if (e.resource?.resourceType !== 'ImagingStudy') continue;
      assert.ok(!seen.has(e.resource.id), `${e.resource.id} seen twice while paging`);
      seen.set(e.resource.id, e.resource);
      if (e.fullUrl && FHIR_SERVER === 'hapi') assert.ok(e.fullUrl.startsWith(GW_FHIR + '/'), `fullUrl on the gateway: ${e.fullUrl}`);
    }
    const next = (bundle.link || []).find((l) => l.relation === 'next');
    if (FHIR_SERVER === 'hapi') {
      // HAPI builds paging links from the Host it was called with: the gateway's.
      for (const l of bundle.link || []) assert.ok(l.url.startsWith(GW_FHIR), `${l.relation} link on the gateway: ${l.url}`);
      if (!next) break;
      bundle = await client.nextPage({ bundle });
    } else {
      // Medplum returns no Bundle.link: page with _offset until a short page.
      assert.equal(next, undefined);
      if ((bundle.entry || []).length < 2) break;
      bundle = await client.search({ resourceType: 'ImagingStudy', searchParams: { _count: 2, _offset: pages * 2 } });
    }
    assert.ok(pages < 50, 'paging terminates');
  }
  const want = [...Object.values(scenarioIds), 'study-foreign', 'study-foreign-contained'];
  for (const id of want) assert.ok(seen.has(id), `${id} found while paging (got ${[...seen.keys()]})`);
  assert.ok(pages >= 3, `${seen.size} studies over ${pages} pages`);
  for (const st of manifest.studies) checkStudyExtensions(seen.get(scenarioIds[st.scenario]), st);
  for (const id of ['study-foreign', 'study-foreign-contained']) {
    const is = seen.get(id);
    for (const se of is.series) {
      assert.equal(ext(se, EXT_WADO_RS).length, 0, `${id}: no URL for an endpoint that is no configured archive`);
      for (const i of se.instance) assert.equal((i.extension || []).length, 0, `${id}: instance untouched`);
    }
  }
});

test(`[${FHIR_SERVER}] search by DICOM study UID with _include=ImagingStudy:endpoint: URLs injected, Endpoints on the gateway's address`, { skip }, async () => {
  for (const st of manifest.studies) {
    const bundle = await client.search({
      resourceType: 'ImagingStudy',
      searchParams: { identifier: `urn:dicom:uid|${st.fhir.identifierValuePrefix}${st.studyInstanceUID}`, _include: 'ImagingStudy:endpoint' },
    });
    const studies = bundle.entry.filter((e) => e.resource.resourceType === 'ImagingStudy').map((e) => e.resource);
    assert.deepEqual(studies.map((s) => s.id), [scenarioIds[st.scenario]], `${st.scenario}: one match`);
    checkStudyExtensions(studies[0], st);
    const endpoints = bundle.entry.filter((e) => e.resource.resourceType === 'Endpoint').map((e) => e.resource);
    assert.ok(endpoints.length >= 1, `${st.scenario}: the _include brought the Endpoints`);
    for (const ep of endpoints) {
      assert.equal(ep.extension, undefined, 'no extension on an Endpoint');
      const want = ep.connectionType.code === 'dicom-wado-uri' ? GW_WADO_URI : GW_DICOMWEB;
      assert.equal(ep.address, want, `${ep.id}: an archive Endpoint is answered with the gateway's base`);
    }
  }
});

test(`[${FHIR_SERVER}] an Endpoint read through the gateway and written back keeps its stored address`, { skip }, async (t) => {
  const ep = await client.read({ resourceType: 'Endpoint', id: 'ep-b-wado-rs' });
  assert.equal(ep.address, GW_DICOMWEB);
  const name = ep.name;
  ep.name = 'Orthanc B WADO-RS (renamed through the gateway)';
  await client.update({ resourceType: 'Endpoint', id: ep.id, body: ep });
  t.after(() => client.update({ resourceType: 'Endpoint', id: ep.id, body: { ...ep, name } }));
  const direct = await fhirClient(DIRECT_FHIR).read({ resourceType: 'Endpoint', id: 'ep-b-wado-rs' });
  assert.equal(direct.name, ep.name, 'the change was stored');
  assert.equal(direct.address, 'http://127.0.0.1:18043/pacs/dicom-web', 'the stored address was put back');
  // The study behind it still routes: series of S3 (archive b) get URLs.
  const s3 = await client.read({ resourceType: 'ImagingStudy', id: 'study-s3' });
  assert.equal(ext(s3.series[0], EXT_WADO_RS).length, 1);
});

test(`[${FHIR_SERVER}] a study read through the gateway and written back keeps exactly one URL per element`, { skip }, async () => {
  // A user reads a study (with the gateway's extensions), edits it and PUTs it back:
  // the stored copy now carries extensions; reading it again must not duplicate them.
  const is = await client.read({ resourceType: 'ImagingStudy', id: 'study-s4' });
  const root = manifest.uidRoot;
  const copy = structuredClone(is);
  delete copy.meta;
  copy.id = 'study-roundtrip';
  copy.identifier = [{ system: 'urn:dicom:uid', value: `urn:oid:${root}.93` }];
  copy.description = 'S4 read through the gateway and written back under another study UID';
  await putResource(GW_FHIR, copy);
  const again = await client.read({ resourceType: 'ImagingStudy', id: 'study-roundtrip' });
  for (const se of again.series) {
    const rs = ext(se, EXT_WADO_RS);
    assert.equal(rs.length, 1, 'one wado-rs extension on the series');
    assert.equal(rs[0].valueUrl, `${GW_DICOMWEB}/studies/${root}.93/series/${se.uid}`, 'recomputed for the new study UID');
    for (const i of se.instance) {
      assert.equal(ext(i, EXT_WADO_RS).length, 1, 'one wado-rs extension on the instance');
      assert.equal(ext(i, EXT_WADO_URI).length, 1, 'one wado-uri extension on the instance');
      assert.ok(ext(i, EXT_WADO_URI)[0].valueUrl.includes(`studyUID=${root}.93&`));
    }
  }
});
