// The test authorization server itself (integration/auth/server.mjs), through
// the helpers the end-to-end tests use (e2e/lib/smart.mjs). Uses AUTH_URL when
// it is set and answers; otherwise starts its own server on a free port.
//   node --test integration/e2e/smart/authserver.test.mjs
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const SERVER = fileURLToPath(new URL('../../auth/server.mjs', import.meta.url));

async function answers(base) {
  try {
    return (await fetch(`${base}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(1000) })).ok;
  } catch {
    return false;
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().once('error', reject);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

// Start our own server unless AUTH_URL already points at one; smart.mjs reads
// AUTH_URL when imported, so it is imported after this.
let child;
if (!(process.env.AUTH_URL && await answers(process.env.AUTH_URL))) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let stderr = '';
  child = spawn(process.execPath, ['--no-warnings', SERVER], {
    env: { ...process.env, AUTH_PORT: String(port), AUTH_ISSUER: '', AUTH_DEBUG: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr.on('data', (d) => { stderr += d; });
  const t0 = Date.now();
  while (!(await answers(base))) {
    if (child.exitCode !== null || Date.now() - t0 > 10_000) throw new Error(`auth server did not start:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  process.env.AUTH_URL = base;
}
after(() => child?.kill('SIGTERM'));

const { AUTH_URL, launch, clientCredentials, introspect, revoke } = await import('../lib/smart.mjs');
const now = () => Math.floor(Date.now() / 1000);
const scopesOf = (s) => (s || '').split(' ');

test('SMART launch bob / pat-s2: patient and fhirUser in the token response and in introspection', async () => {
  const tok = await launch({ user: 'bob', patient: 'pat-s2', scope: 'launch/patient openid fhirUser patient/ImagingStudy.rs' });
  assert.equal(tok.token_type, 'Bearer');
  assert.equal(tok.patient, 'pat-s2');
  assert.ok(tok.id_token, 'id_token for openid');
  assert.doesNotMatch(tok.access_token, /^ey/, 'access token is opaque, not a JWT');
  const info = await introspect(tok.access_token);
  assert.equal(info.active, true);
  assert.ok(scopesOf(info.scope).includes('patient/ImagingStudy.rs'), info.scope);
  assert.equal(info.patient, 'pat-s2');
  assert.equal(info.fhirUser, 'Patient/pat-s2');
  assert.equal(info.sub, 'bob');
  assert.equal(info.client_id, 'smart-app');
  assert.equal(info.iss, AUTH_URL);
  assert.equal(info.aud, process.env.AUTH_AUDIENCE || 'http://127.0.0.1:8000/fhir');
  assert.ok(info.exp > now(), `exp ${info.exp} in the future`);
  // the gateway introspects too
  assert.equal((await introspect(tok.access_token, { clientId: 'imaging-gateway' })).patient, 'pat-s2');
});

test('a patient the user may not pick is refused', async () => {
  await assert.rejects(launch({ user: 'bob', patient: 'pat-s1', scope: 'launch/patient patient/ImagingStudy.rs' }), /403.*access_denied/s);
});

test('only requested and allowed scopes; a caregiver; a practitioner without a patient', async () => {
  const proxy = await launch({ user: 'bob-proxy', patient: 'pat-s2', scope: 'launch/patient fhirUser patient/*.rs system/*.cruds' });
  assert.deepEqual(scopesOf(proxy.scope).sort(), ['fhirUser', 'launch/patient', 'patient/*.rs']);
  const info = await introspect(proxy.access_token);
  assert.equal(info.fhirUser, 'RelatedPerson/bob-proxy');
  assert.equal(info.patient, 'pat-s2');

  const dr = await launch({ user: 'dr-who', scope: 'openid fhirUser user/*.rs' });
  assert.equal(dr.patient, undefined);
  const drInfo = await introspect(dr.access_token);
  assert.equal(drInfo.fhirUser, 'Practitioner/dr-who');
  assert.equal(drInfo.patient, undefined);
});

test('client_credentials for the gateway: system scopes, no patient; revocation makes it inactive', async () => {
  const tok = await clientCredentials({ clientId: 'imaging-gateway', scope: 'system/ImagingStudy.rs system/Endpoint.rs system/*.cruds' });
  assert.deepEqual(scopesOf(tok.scope), ['system/ImagingStudy.rs', 'system/Endpoint.rs']);
  assert.equal(tok.patient, undefined);
  const info = await introspect(tok.access_token);
  assert.equal(info.active, true);
  assert.equal(info.client_id, 'imaging-gateway');
  assert.equal(info.patient, undefined);
  assert.equal(info.sub, undefined);

  await revoke(tok.access_token);
  assert.deepEqual(await introspect(tok.access_token), { active: false });
});

test('revocation of a public client\'s token; refresh keeps the patient', async () => {
  const tok = await launch({ user: 'alice', scope: 'launch/patient offline_access patient/ImagingStudy.rs' });
  assert.equal(tok.patient, 'pat-s1', 'the only patient alice may pick');
  assert.ok(tok.refresh_token, 'refresh token for offline_access');
  const res = await fetch(`${AUTH_URL}/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tok.refresh_token, client_id: 'smart-app' }),
  });
  assert.equal(res.status, 200);
  const refreshed = await res.json();
  assert.equal(refreshed.patient, 'pat-s1');
  assert.equal((await introspect(refreshed.access_token)).patient, 'pat-s1');

  await revoke(refreshed.access_token);
  assert.deepEqual(await introspect(refreshed.access_token), { active: false });
  // oidc-provider revokes every token of the grant (RFC 7009 2.1 allows it)
  assert.deepEqual(await introspect(tok.access_token), { active: false });
  assert.deepEqual(await introspect(refreshed.refresh_token), { active: false });
});

test('a smart-app-short token is inactive once its 4 s are over', async () => {
  const tok = await launch({ client: 'smart-app-short', user: 'bob', patient: 'pat-s2', scope: 'launch/patient patient/ImagingStudy.rs' });
  assert.equal(tok.expires_in, 4);
  const info = await introspect(tok.access_token);
  assert.equal(info.active, true);
  assert.equal(info.exp - info.iat, 4);
  await new Promise((r) => setTimeout(r, Math.max(0, (info.exp + 1) * 1000 - Date.now())));
  assert.deepEqual(await introspect(tok.access_token), { active: false });
});

test('an unknown token is inactive', async () => {
  assert.deepEqual(await introspect('no-such-token'), { active: false });
});

test('introspection without (valid) client authentication is refused with 401', async () => {
  const { access_token: token } = await clientCredentials({ clientId: 'seeder', scope: 'system/*.rs' });
  const anon = await fetch(`${AUTH_URL}/token/introspection`, { method: 'POST', body: new URLSearchParams({ token }) });
  assert.equal(anon.status, 401);
  assert.equal((await anon.json()).error, 'invalid_client');
  await assert.rejects(introspect(token, { clientId: 'hapi-fhir', secret: 'wrong' }), (e) => e.status === 401);
});
