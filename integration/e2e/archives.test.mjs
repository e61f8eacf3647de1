// Checks the archives themselves (no gateway): every manifest instance is in the
// Orthanc it belongs to and comes back byte-identical through dicomweb-client.
// Run inside the private namespace with the Orthancs up and the data uploaded:
//   integration/stack.sh run orthanc -- bash -c 'integration/stack.sh data &&
//     STUDIES_MANIFEST=$STACK_RUN_DIR/studies/studies.json node --test integration/e2e/archives.test.mjs'
// Env: STUDIES_MANIFEST (else $STACK_RUN_DIR/studies/studies.json; skips when neither is set), ORTHANC_A_DICOMWEB, ORTHANC_B_DICOMWEB,
//      ORTHANC_A_WADO_URI, ORTHANC_B_WADO_URI (defaults: stack.sh's addresses).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  makeClient, loadManifest, instances, verifyInstance, retrieveFrames, retrieveSeriesBytes,
  sha256, tagValue, fetchMultipart,
} from './lib/dicomweb.mjs';

const manifestPath = process.env.STUDIES_MANIFEST ||
  (process.env.STACK_RUN_DIR ? `${process.env.STACK_RUN_DIR}/studies/studies.json` : undefined);
const skip = manifestPath ? false : 'STUDIES_MANIFEST not set';
const base = {
  a: process.env.ORTHANC_A_DICOMWEB || 'http://127.0.0.1:18042/dicom-web',
  b: process.env.ORTHANC_B_DICOMWEB || 'http://127.0.0.1:18043/pacs/dicom-web',
};
const wadoUri = {
  a: process.env.ORTHANC_A_WADO_URI || 'http://127.0.0.1:18042/wado',
  b: process.env.ORTHANC_B_WADO_URI || 'http://127.0.0.1:18043/pacs/wado',
};
const manifest = manifestPath ? loadManifest(manifestPath) : { studies: [] };
const all = instances(manifest);
const clients = { a: makeClient(base.a), b: makeClient(base.b) };

test('QIDO-RS: each archive lists exactly the studies and series it holds', { skip }, async () => {
  for (const arch of ['a', 'b']) {
    const want = [...new Set(all.filter((i) => i.archive === arch).map((i) => i.studyInstanceUID))].sort();
    const got = (await clients[arch].searchForStudies()).map((s) => tagValue(s, '0020000D')).sort();
    assert.deepEqual(got, want, `studies in archive ${arch}`);
    for (const study of want) {
      const wantSeries = [...new Set(all.filter((i) => i.archive === arch && i.studyInstanceUID === study)
        .map((i) => i.seriesInstanceUID))].sort();
      const gotSeries = (await clients[arch].searchForSeries({ studyInstanceUID: study }))
        .map((s) => tagValue(s, '0020000E')).sort();
      assert.deepEqual(gotSeries, wantSeries, `series of ${study} in archive ${arch}`);
    }
  }
});

test('WADO-RS retrieveInstance: every instance byte-identical (SHA-256)', { skip }, async () => {
  assert.ok(all.length > 0);
  for (const inst of all) {
    const r = await verifyInstance(clients[inst.archive], inst);
    assert.ok(r.ok, `${inst.file}: got ${r.sha256} (${r.size} B), want ${r.expected} (${r.expectedSize} B)`);
  }
});

test('WADO-RS retrieveSeries: all parts present and byte-identical', { skip }, async () => {
  for (const st of manifest.studies) {
    for (const se of st.series) {
      const parts = await retrieveSeriesBytes(clients[se.archive], st.studyInstanceUID, se.seriesInstanceUID);
      assert.deepEqual(parts.map(sha256).sort(), se.instances.map((i) => i.sha256).sort(), se.seriesInstanceUID);
    }
  }
});

test('WADO-RS: an instance is only in its own archive (404 elsewhere)', { skip }, async () => {
  const inst = all.find((i) => i.archive === 'b');
  const r = await fetchMultipart(`${base.a}/studies/${inst.studyInstanceUID}/series/${inst.seriesInstanceUID}/instances/${inst.sopInstanceUID}`);
  assert.equal(r.status, 404);
});

test('WADO-RS metadata and frames of the multi-frame instance', { skip }, async () => {
  const mf = all.find((i) => i.frames > 1);
  assert.ok(mf, 'manifest has a multi-frame instance');
  const c = clients[mf.archive];
  const meta = await c.retrieveInstanceMetadata({
    studyInstanceUID: mf.studyInstanceUID, seriesInstanceUID: mf.seriesInstanceUID, sopInstanceUID: mf.sopInstanceUID,
  });
  assert.equal(tagValue(meta[0], '00080018'), mf.sopInstanceUID);
  assert.equal(Number(tagValue(meta[0], '00280008')), mf.frames);
  const [frame2] = await retrieveFrames(c, mf.studyInstanceUID, mf.seriesInstanceUID, mf.sopInstanceUID, 2);
  const file = readFileSync(mf.path);
  // pixel data is the last element of the file; frame 2 is its last 64*64*2 bytes
  assert.equal(frame2.length, 64 * 64 * 2);
  assert.ok(frame2.equals(file.subarray(file.length - 8192)), 'frame 2 bytes equal the file tail');
});

test('WADO-URI: application/dicom byte-identical on both archives', { skip }, async () => {
  for (const arch of ['a', 'b']) {
    const inst = all.find((i) => i.archive === arch);
    const q = `requestType=WADO&studyUID=${inst.studyInstanceUID}&seriesUID=${inst.seriesInstanceUID}` +
      `&objectUID=${inst.sopInstanceUID}&contentType=application/dicom`;
    const res = await fetch(`${wadoUri[arch]}?${q}`);
    assert.equal(res.status, 200, `${wadoUri[arch]} status`);
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), inst.sha256);
  }
});
