// Replicas: a study held whole by two archives, whose ImagingStudy lists both
// archives' WADO-RS and WADO-URI Endpoints (the first replica first). Every
// retrieve through the gateway works and gives the same bytes (SHA-256) with
// both archives up and again after the first replica's Orthanc has been
// stopped: the gateway asks the second before any byte reaches the client.
//
// Self-contained, so that no other test sees it: this file makes scenario S6
// (make-studies.sh), starts two Orthancs of its own (c on 18046, d on 18047:
// orthanc/make-config.sh), uploads S6 to both (upload.sh), writes its Patient,
// Endpoints and ImagingStudy into the stack's FHIR server (seed-fhir.mjs,
// directly), runs a gateway of its own (caddyfile/examples/replicas.Caddyfile,
// port 8004, its admin API on a unix socket in its run directory) in front of them, and removes all of it at the end.
// The stack's gateway and archives a and b are not touched.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import http from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FHIR_SERVER, DIRECT_FHIR, EXT_WADO_RS, EXT_WADO_URI, skip, get, ext } from './lib/env.mjs';
import {
  makeClient, loadManifest, retrieveInstanceBytes, retrieveSeriesBytes, retrieveStudyBytes,
  retrieveFrames, sha256, tagValue,
} from './lib/dicomweb.mjs';
import { seed } from '../data/seed-fhir.mjs';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const INTEGRATION = join(HERE, '..');
const REPO = join(INTEGRATION, '..');
const PORT = Number(process.env.REPLICAS_PORT || 8004);
const GW = `http://127.0.0.1:${PORT}`;
const PORTS = { c: Number(process.env.ORTHANC_C_HTTP_PORT || 18046), d: Number(process.env.ORTHANC_D_HTTP_PORT || 18047) };
const ORTHANC = { c: `http://127.0.0.1:${PORTS.c}`, d: `http://127.0.0.1:${PORTS.d}` };
const ARCHIVES = {
  c: { dicomweb: `${ORTHANC.c}/dicom-web`, wadoUri: `${ORTHANC.c}/wado` },
  d: { dicomweb: `${ORTHANC.d}/replica/dicom-web`, wadoUri: `${ORTHANC.d}/replica/wado` },
};
const FHIR_UPSTREAM = new URL(DIRECT_FHIR).host;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const procs = {};
let dir;
let adminSocket;
let manifest;
let study;
let seeded;

async function until(what, fn, timeoutMs = 30_000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try { if (await fn()) return; } catch (e) { last = e; }
    await sleep(200);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms (${last})`);
}

function start(name, cmd, args, env = {}) {
  const log = openSync(join(dir, 'logs', `${name}.log`), 'a');
  const p = spawn(cmd, args, { stdio: ['ignore', log, log], env: { ...process.env, ...env } });
  p.exited = new Promise((resolve) => p.once('exit', resolve));
  procs[name] = p;
  return p;
}

async function stop(name) {
  const p = procs[name];
  if (!p) return;
  delete procs[name];
  if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
  await p.exited;
}

before(async () => {
  if (skip) return;
  const runDir = process.env.STACK_RUN_DIR;
  dir = runDir ? join(runDir, 'replicas') : mkdtempSync(join(tmpdir(), 'replicas-'));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const env = { ...process.env, STUDIES_SCENARIOS: 'S6', ORTHANC_C_URL: ORTHANC.c, ORTHANC_D_URL: ORTHANC.d };
  execFileSync('bash', [join(INTEGRATION, 'data', 'make-studies.sh'), join(dir, 'studies')], { env, stdio: 'pipe' });
  manifest = loadManifest(join(dir, 'studies', 'studies.json'));
  study = manifest.studies[0];
  for (const n of ['c', 'd']) {
    const cfg = execFileSync('bash', [join(INTEGRATION, 'orthanc', 'make-config.sh'), n, dir], { env }).toString().trim();
    start(`orthanc-${n}`, '/usr/sbin/Orthanc', [cfg]);
  }
  for (const n of ['c', 'd']) await until(`orthanc-${n} up`, async () => (await fetch(`${ORTHANC[n]}/system`)).ok);
  execFileSync('bash', [join(INTEGRATION, 'data', 'upload.sh'), join(dir, 'studies', 'studies.json')], { env, stdio: 'pipe' });
  seeded = await seed({ fhir: DIRECT_FHIR, manifest, archives: ARCHIVES, quiet: true });
  // The admin API (explain) on a unix socket of the test's own: never a
  // network address, where whoever reaches it could replace the config.
  adminSocket = join(dir, 'admin.sock');
  const bin = process.env.CADDY_BIN || join(REPO, 'caddy');
  start('gateway', bin, ['run', '--adapter', 'caddyfile', '--config', join(REPO, 'caddyfile', 'examples', 'replicas.Caddyfile')], {
    REPLICAS_PORT: String(PORT), REPLICAS_ADMIN: `unix/${adminSocket}`, FHIR_UPSTREAM_HOST: FHIR_UPSTREAM,
    ORTHANC_C_HTTP_PORT: String(PORTS.c), ORTHANC_D_HTTP_PORT: String(PORTS.d),
    XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir, HOME: dir,
  });
  await until('replica gateway up', async () => (await fetch(`${GW}/metrics`)).ok);
});

after(async () => {
  if (skip) return;
  for (const name of Object.keys(procs)) await stop(name);
  if (seeded) {
    // Leave the FHIR server as the other tests expect it.
    const ids = [seeded.scenarios.S6.imagingStudy, seeded.scenarios.S6.patient, ...Object.keys(seeded.endpoints).map((id) => `Endpoint/${id}`)];
    for (const id of ids) {
      const r = await fetch(`${DIRECT_FHIR}/${id}`, { method: 'DELETE', headers: { Accept: 'application/fhir+json' } });
      if (r.status >= 300 && r.status !== 404 && r.status !== 410) process.stderr.write(`[replicas] DELETE ${id}: ${r.status}\n`);
    }
  }
  if (!process.env.STACK_RUN_DIR && dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * GET on Caddy's admin endpoint (its unix socket) with node:http: the admin API refuses
 * fetch(), whose Sec-Fetch-Mode marks a browser request without an Origin.
 */
function adminGet(path) {
  return new Promise((resolve, reject) => {
    http.get({ socketPath: adminSocket, path }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, text, json });
      });
    }).on('error', reject);
  });
}

const allInstances = () => study.series.flatMap((se) => se.instances.map((i) => ({ ...i, series: se.seriesInstanceUID })));

/**
 * Every kind of retrieve of the replicated study through the gateway: the
 * injected URLs of its ImagingStudy, study, series and instance retrieves,
 * frames, metadata, rendered images and WADO-URI. Returns the SHA-256 of each
 * answer by name, after checking the DICOM files against the manifest.
 */
async function retrieveEverything() {
  const uid = study.studyInstanceUID;
  const seen = {};
  const client = makeClient(`${GW}/wado-rs`);

  // FHIR through this gateway: the URLs injected for the replicated study.
  const bundle = await get(`${GW}/fhir/ImagingStudy?identifier=${encodeURIComponent(`urn:dicom:uid|urn:oid:${uid}`)}`, { headers: { Accept: 'application/fhir+json' } });
  assert.equal(bundle.status, 200, bundle.text.slice(0, 300));
  const is = bundle.json.entry?.find((e) => e.resource.resourceType === 'ImagingStudy')?.resource;
  assert.ok(is, 'the ImagingStudy is found through the gateway');
  for (const se of is.series) {
    const [rs] = ext(se, EXT_WADO_RS);
    assert.equal(rs?.valueUrl, `${GW}/wado-rs/studies/${uid}/series/${se.uid}`, `series ${se.uid}: WADO-RS URL`);
    for (const inst of se.instance) {
      const [uri] = ext(inst, EXT_WADO_URI);
      assert.ok(uri?.valueUrl?.startsWith(`${GW}/wado?`), `instance ${inst.uid}: WADO-URI URL`);
      const r = await get(uri.valueUrl);
      assert.equal(r.status, 200, `WADO-URI ${inst.uid}: ${r.text.slice(0, 200)}`);
      const want = allInstances().find((i) => i.sopInstanceUID === inst.uid);
      assert.equal(sha256(r.buf), want.sha256, `WADO-URI ${inst.uid}: the stored file`);
      seen[`wado-uri ${inst.uid}`] = sha256(r.buf);
    }
  }

  // The study once: replicas are not merged into a doubled answer.
  const studyParts = await retrieveStudyBytes(client, uid);
  assert.deepEqual(studyParts.map(sha256).sort(), allInstances().map((i) => i.sha256).sort(), 'study retrieve: each instance once, byte-identical');
  for (const se of study.series) {
    const parts = await retrieveSeriesBytes(client, uid, se.seriesInstanceUID);
    assert.deepEqual(parts.map(sha256).sort(), se.instances.map((i) => i.sha256).sort(), `series ${se.number} retrieve`);
    const meta = await get(`${GW}/wado-rs/studies/${uid}/series/${se.seriesInstanceUID}/metadata`, { headers: { Accept: 'application/dicom+json' } });
    assert.equal(meta.status, 200, meta.text.slice(0, 200));
    assert.ok(!/127\.0\.0\.1:1804[67]/.test(meta.text), 'no archive address in the metadata');
    const bySop = [...meta.json].sort((x, y) => tagValue(x, '00080018').localeCompare(tagValue(y, '00080018')));
    assert.deepEqual(bySop.map((ds) => tagValue(ds, '00080018')), se.instances.map((i) => i.sopInstanceUID).sort());
    seen[`metadata ${se.number}`] = sha256(Buffer.from(JSON.stringify(bySop)));
  }
  for (const inst of allInstances()) {
    const buf = await retrieveInstanceBytes(client, uid, inst.series, inst.sopInstanceUID);
    assert.equal(sha256(buf), inst.sha256, `instance ${inst.sopInstanceUID}`);
    for (let f = 1; f <= inst.frames; f++) {
      const [frame] = await retrieveFrames(client, uid, inst.series, inst.sopInstanceUID, f);
      assert.equal(frame.length, 64 * 64 * 2, `frame ${f} of ${inst.sopInstanceUID}: 64x64 16-bit`);
      seen[`frame ${inst.sopInstanceUID}/${f}`] = sha256(frame);
    }
    const rendered = await get(`${GW}/wado-rs/studies/${uid}/series/${inst.series}/instances/${inst.sopInstanceUID}/rendered`, { headers: { Accept: 'image/png' } });
    assert.equal(rendered.status, 200, `rendered ${inst.sopInstanceUID}: ${rendered.text.slice(0, 200)}`);
    assert.equal(rendered.buf.subarray(1, 4).toString('latin1'), 'PNG', 'a PNG image');
    seen[`rendered ${inst.sopInstanceUID}`] = sha256(rendered.buf);
  }
  return seen;
}

async function failovers() {
  const text = (await get(`${GW}/metrics`)).text;
  let n = 0;
  for (const m of text.matchAll(/^caddy_fhir_imaging_archive_failovers_total\{([^}]*)\} (\d+)/gm)) {
    if (m[1].includes('from="orthanc-c"') && m[1].includes('to="orthanc-d"')) n += Number(m[2]);
  }
  return n;
}

test(`replicas (${FHIR_SERVER}): explain shows the order, every retrieve survives the first replica's Orthanc stopping`, { skip, timeout: 240_000 }, async (t) => {
  const uid = study.studyInstanceUID;
  for (const series of ['', study.series[0].seriesInstanceUID, study.series[1].seriesInstanceUID]) {
    const ex = await adminGet(`/fhir_imaging/explain/${uid}${series ? `?series=${series}` : ''}`);
    assert.equal(ex.status, 200, ex.text);
    assert.deepEqual(ex.json.wado_rs_order, ['orthanc-c', 'orthanc-d'], `explain ${series || 'study'}: ${ex.text}`);
    assert.deepEqual(ex.json.wado_uri_order, ['orthanc-c', 'orthanc-d'], `explain ${series || 'study'}: WADO-URI order`);
    assert.equal(ex.json.merged_archives, undefined, 'replicas are no split study');
  }

  const before = await retrieveEverything();
  assert.equal(await failovers(), 0, 'no failover while both archives are up');
  // Both archives really hold it: the same files straight from d.
  const fromD = await retrieveStudyBytes(makeClient(ARCHIVES.d.dicomweb), uid);
  assert.deepEqual(fromD.map(sha256).sort(), allInstances().map((i) => i.sha256).sort(), 'orthanc-d holds the study too');

  await stop('orthanc-c');
  assert.equal((await fetch(`${ORTHANC.c}/system`).then(() => 'up', () => 'down')), 'down', 'orthanc-c is stopped');
  const afterStop = await retrieveEverything();
  assert.deepEqual(afterStop, before, 'every answer the same, byte for byte, with the first replica down');
  const n = await failovers();
  assert.ok(n >= Object.keys(before).length, `failovers counted: ${n}`);
  t.diagnostic(`${Object.keys(before).length} answers compared; ${n} failovers from orthanc-c to orthanc-d`);

  // Logged as a warning naming the archives, never the study.
  const log = readFileSync(join(dir, 'logs', 'gateway.log'), 'utf8');
  const warned = log.split('\n').filter((l) => l.includes('trying its replica'));
  assert.ok(warned.length > 0, 'the failover is logged');
  for (const l of warned) {
    assert.ok(l.includes('"from":"orthanc-c"') && l.includes('"to":"orthanc-d"'), l);
    assert.ok(!l.includes(uid), `no UID in the log line: ${l}`);
  }
});
