// What a token's life does to access: decisions are cached per token (a burst
// of requests costs one introspection), a revoked token stops working within
// decision_ttl, an expired one at its exp; and when the authorization server
// or the FHIR server cannot be asked, the answer is 503, never data.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch, revoke } from '../lib/smart.mjs';
import { DIRECT_FHIR } from '../lib/env.mjs';
import { skip, gw, metric, sleep, S2, DECISION_TTL_MS } from './setup.mjs';

const patientScopes = 'launch/patient openid fhirUser patient/ImagingStudy.rs';
const metadata = `/wado-rs/studies/${S2?.studyInstanceUID}/series/${S2?.series[1].seriesInstanceUID}/metadata`;

test('a burst of 200 requests with one token: introspected once, looked up once', { skip }, async (t) => {
  const { access_token: token } = await launch({ user: 'bob', patient: 'pat-s2', scope: patientScopes });
  const introspections = () => metric('caddy_fhir_imaging_access_checks_total', { kind: 'introspect' });
  const lookups = () => metric('caddy_fhir_imaging_access_checks_total', { kind: 'fhir_lookup' });
  const [i0, l0] = [await introspections(), await lookups()];
  const started = Date.now();
  let ok = 0;
  for (let wave = 0; wave < 10; wave++) {
    const rs = await Promise.all(Array.from({ length: 20 }, () => gw(metadata, token, { Accept: 'application/dicom+json' })));
    ok += rs.filter((r) => r.status === 200).length;
  }
  const [di, dl] = [(await introspections()) - i0, (await lookups()) - l0];
  t.diagnostic(`200 requests (20 at a time) in ${Date.now() - started} ms: ${di} introspection(s), ${dl} FHIR visibility look-up(s)`);
  assert.equal(ok, 200);
  assert.ok(di >= 1 && di <= 1 + Math.ceil((Date.now() - started) / DECISION_TTL_MS), `${di} introspections for one token`);
  assert.ok(dl >= 1 && dl <= di, `${dl} look-ups`);
});

test('a revoked token stops working within decision_ttl + 1 s', { skip, timeout: 30_000 }, async (t) => {
  const { access_token: token } = await launch({ user: 'bob', patient: 'pat-s2', scope: patientScopes });
  assert.equal((await gw(metadata, token)).status, 200);
  await revoke(token);
  const revokedAt = Date.now();
  let status;
  while (Date.now() - revokedAt < DECISION_TTL_MS + 1000) {
    status = (await gw(metadata, token)).status;
    if (status === 401) break;
    await sleep(100);
  }
  t.diagnostic(`refused ${Date.now() - revokedAt} ms after revocation (decision_ttl ${DECISION_TTL_MS} ms)`);
  assert.equal(status, 401, 'still served after decision_ttl + 1 s');
});

test('an expired token stops working at its exp', { skip, timeout: 30_000 }, async (t) => {
  const res = await launch({ user: 'bob', patient: 'pat-s2', scope: patientScopes, client: 'smart-app-short' });
  const expiresAt = Date.now() + res.expires_in * 1000;
  assert.equal((await gw(metadata, res.access_token)).status, 200);
  let status;
  while (Date.now() < expiresAt + 1500) {
    status = (await gw(metadata, res.access_token)).status;
    if (status === 401) break;
    await sleep(100);
  }
  t.diagnostic(`refused ${Date.now() - expiresAt} ms after exp (token lifetime ${res.expires_in} s)`);
  assert.equal(status, 401);
  assert.ok(Date.now() >= expiresAt - 1000, 'refused before it expired');
});

/** A second gateway on the same archives whose authorization server or FHIR server cannot be reached. */
async function brokenGateway(port, { introspect, fhir }) {
  const dir = mkdtempSync(join(tmpdir(), 'gw-broken-'));
  const caddyfile = join(dir, 'Caddyfile');
  writeFileSync(caddyfile, `{
	admin off
	persist_config off
	fhir_imaging {
		fhir ${fhir}
		archive orthanc-a http://127.0.0.1:18042/dicom-web
		archive orthanc-b http://127.0.0.1:18043/pacs/dicom-web
		lookup_timeout 1s
		authorize {
			introspect ${introspect} {
				client_id imaging-gateway
				client_secret gateway-secret
			}
		}
	}
}
http://127.0.0.1:${port} {
	handle_path /wado-rs/* {
		dicomweb
	}
}
`);
  const bin = process.env.CADDY_BIN || new URL('../../../caddy', import.meta.url).pathname;
  const proc = spawn(bin, ['run', '--adapter', 'caddyfile', '--config', caddyfile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d) => { log += d; });
  for (let i = 0; i < 100; i++) {
    try { await fetch(`http://127.0.0.1:${port}/`); break; } catch { await sleep(100); }
  }
  return {
    url: `http://127.0.0.1:${port}`,
    log: () => log,
    stop: async () => { proc.kill('SIGTERM'); await new Promise((r) => proc.once('exit', r)); rmSync(dir, { recursive: true, force: true }); },
  };
}

test('the authorization server or the FHIR server unreachable: 503, never data, and logged', { skip, timeout: 60_000 }, async () => {
  const { access_token: token } = await launch({ user: 'bob', patient: 'pat-s2', scope: patientScopes });
  const dead = 'http://127.0.0.1:9'; // discard port: nothing listens
  for (const [what, port, cfg] of [
    ['introspection down', 8004, { introspect: `${dead}/token/introspection`, fhir: DIRECT_FHIR }],
    ['FHIR server down', 8005, { introspect: `${process.env.AUTH_URL || 'http://127.0.0.1:9000'}/token/introspection`, fhir: `${dead}/fhir` }],
  ]) {
    const g = await brokenGateway(port, cfg);
    try {
      const res = await fetch(`${g.url}${metadata}`, { headers: { Authorization: `Bearer ${token}`, Accept: 'application/dicom+json' } });
      const body = await res.json();
      assert.equal(res.status, 503, `${what}: ${res.status} ${JSON.stringify(body)}`);
      assert.match(body.message, /access could not be checked/, what);
      assert.ok(!JSON.stringify(body).includes('127.0.0.1'), `${what}: no internal address in the answer`);
      await sleep(200);
      assert.match(g.log(), /access could not be checked; request refused/, `${what}: logged`);
      assert.ok(!g.log().includes(token), `${what}: the token is not in the log`);
    } finally {
      await g.stop();
    }
  }
});
