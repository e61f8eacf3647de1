// Scale-out: a second gateway instance that registers FHIR rest-hook
// Subscriptions (`subscribe` in the fhir_imaging block) learns of a change
// made directly in the FHIR server, bypassing every gateway, and routes by
// the new data on its next requests, long before its cache TTL (1h here).
// HAPI only: Medplum's fhir-router + MemoryRepository delivers no
// rest-hook notifications.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FHIR_SERVER, DIRECT_FHIR, byScenario, skip, get } from './lib/env.mjs';

const PORT = Number(process.env.E2E_SCALEOUT_PORT || 8002);
const GW2 = `http://127.0.0.1:${PORT}`;
// The notify route is a route of the gateway's own site (fhir_notify), open to
// the FHIR server's address only; the admin API stays off the network.
const CALLBACK = `${GW2}/fhir_imaging/notify`;
const reason = skip || (FHIR_SERVER !== 'hapi' ? `${FHIR_SERVER} sends no rest-hook notifications` : false);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, timeoutMs) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last.ok) return last;
    await sleep(250);
  }
  assert.fail(`${what}: not within ${timeoutMs} ms (last: ${JSON.stringify(last.seen)})`);
}

async function ourSubscriptions() {
  const r = await get(`${DIRECT_FHIR}/Subscription?_count=50`, { headers: { Accept: 'application/fhir+json' } });
  return (r.json?.entry || []).map((e) => e.resource).filter((s) => s.channel?.endpoint === CALLBACK);
}

test('scale-out: a change made directly in HAPI reaches a subscribed gateway at once', { skip: reason, timeout: 180_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gw2-'));
  const caddyfile = join(dir, 'Caddyfile');
  writeFileSync(caddyfile, `{
	admin off
	persist_config off
	fhir_imaging {
		fhir ${DIRECT_FHIR}
		archive orthanc-a http://127.0.0.1:18042/dicom-web {
			wado_uri http://127.0.0.1:18042/wado
		}
		archive orthanc-b http://127.0.0.1:18043/pacs/dicom-web {
			wado_uri http://127.0.0.1:18043/pacs/wado
		}
		cache_ttl 1h
		subscribe ${CALLBACK}
	}
}
http://127.0.0.1:${PORT} {
	handle_path /wado-rs/* {
		dicomweb
	}
	handle_path /fhir_imaging/notify* {
		@outsider not remote_ip 127.0.0.1
		respond @outsider 403
		fhir_notify
	}
}
`);
  const bin = process.env.CADDY_BIN || new URL('../../caddy', import.meta.url).pathname;
  const gw2 = spawn(bin, ['run', '--adapter', 'caddyfile', '--config', caddyfile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  gw2.stderr.on('data', (d) => { log += d; });
  const s1 = byScenario.S1;
  const series = s1.series[0].seriesInstanceUID;
  const url = `${GW2}/wado-rs/studies/${s1.studyInstanceUID}/series/${series}/metadata`;
  const original = (await get(`${DIRECT_FHIR}/ImagingStudy/study-s1`, { headers: { Accept: 'application/fhir+json' } })).json;
  try {
    await until('gateway 2 up', async () => {
      try { const r = await get(url); return { ok: r.status === 200, seen: r.status }; } catch (e) { return { ok: false, seen: String(e) }; }
    }, 20_000);
    // HAPI activates rest-hook Subscriptions asynchronously.
    await until('both Subscriptions registered and active in HAPI', async () => {
      const subs = await ourSubscriptions();
      return { ok: subs.length === 2 && subs.every((s) => s.status === 'active'), seen: subs.map((s) => `${s.criteria}:${s.status}`) };
    }, 60_000);

    // The route of S1 is cached on gateway 2: archive A.
    assert.equal((await get(url)).status, 200);

    // Move S1's Endpoint to archive B directly in HAPI, past every gateway.
    const moved = structuredClone(original);
    delete moved.meta;
    moved.endpoint = [{ reference: 'Endpoint/ep-b-wado-rs' }];
    const put = await get(`${DIRECT_FHIR}/ImagingStudy/study-s1`, {
      method: 'PUT', headers: { 'Content-Type': 'application/fhir+json' }, body: JSON.stringify(moved),
    });
    assert.equal(put.status, 200, put.text.slice(0, 300));

    // Gateway 2 now asks archive B, which does not hold S1: 404 from Orthanc.
    const t0 = Date.now();
    await until('gateway 2 routing S1 to archive B', async () => {
      const r = await get(url);
      return { ok: r.status === 404, seen: r.status };
    }, 20_000);
    console.log(`# notification took effect ${Date.now() - t0} ms after the direct update`);
  } finally {
    const restore = structuredClone(original);
    delete restore.meta;
    await get(`${DIRECT_FHIR}/ImagingStudy/study-s1`, {
      method: 'PUT', headers: { 'Content-Type': 'application/fhir+json' }, body: JSON.stringify(restore),
    });
    gw2.kill('SIGTERM');
    await new Promise((r) => gw2.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
  // A stopped gateway leaves no Subscription behind.
  const left = await ourSubscriptions();
  assert.equal(left.length, 0, `Subscriptions left after stop: ${left.map((s) => s.id)}\n${log.slice(-2000)}`);
});
