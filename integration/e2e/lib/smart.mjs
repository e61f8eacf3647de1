// Getting tokens from the test authorization server (integration/auth/server.mjs)
// the way real clients do: a SMART App Launch (authorization code + PKCE, the
// login and patient pick scripted through /interaction/:uid), client_credentials,
// RFC 7662 introspection and RFC 7009 revocation. Plain fetch, no browser.
//
// Environment: AUTH_URL (default http://127.0.0.1:9000), AUTH_AUDIENCE (sent as
// aud= when set; otherwise the server's default resource applies), and the
// client secrets AUTH_GATEWAY_SECRET, AUTH_HAPI_SECRET, AUTH_SEEDER_SECRET as
// given to the server.
import crypto from 'node:crypto';

export const AUTH_URL = (process.env.AUTH_URL || 'http://127.0.0.1:9000').replace(/\/+$/, '');
export const REDIRECT_URI = 'http://127.0.0.1:9999/callback';
/** Secrets of the confidential clients. */
export const CLIENT_SECRETS = {
  'imaging-gateway': process.env.AUTH_GATEWAY_SECRET || 'gateway-secret',
  'hapi-fhir': process.env.AUTH_HAPI_SECRET || 'hapi-secret',
  seeder: process.env.AUTH_SEEDER_SECRET || 'seeder-secret',
};

/** Authorization: Basic for a client (RFC 6749 2.3.1: both parts form-urlencoded first). */
export function basicAuth(clientId, secret = CLIENT_SECRETS[clientId]) {
  const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(clientId)}:${enc(secret)}`).toString('base64')}`;
}

async function postForm(path, form, headers = {}) {
  const res = await fetch(`${AUTH_URL}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json', ...headers },
    body: new URLSearchParams(form),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { /* empty (revocation) or not JSON */ }
  if (!res.ok) {
    throw Object.assign(new Error(`POST ${path} -> ${res.status}: ${text.slice(0, 300)}`), { status: res.status, body: json });
  }
  return json;
}

/** Cookies by name, as a browser would keep them for one launch (paths are ignored). */
class CookieJar {
  #cookies = new Map();
  store(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      const expired = attrs.some((a) => /^\s*expires=/i.test(a) && Date.parse(a.split('=')[1]) <= Date.now());
      if (!value || expired) this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }
  header() {
    return [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

/**
 * A SMART App Launch (standalone) for `user` picking `patient`, up to the token
 * response: GET /auth with PKCE S256, the redirects to /interaction/:uid, the
 * scripted login + patient pick (POST {user, patient}), back through /auth/:uid
 * to the redirect_uri with ?code=, and the code exchange at /token.
 * Resolves to the token response (access_token, expires_in, scope, patient,
 * id_token, refresh_token when offline_access was asked for); rejects when any
 * step fails (an unknown user or a patient the user may not pick: 403 access_denied).
 */
export async function launch({ user, patient, scope, client = 'smart-app', aud = process.env.AUTH_AUDIENCE }) {
  const verifier = crypto.randomBytes(32).toString('base64url');
  const state = crypto.randomBytes(12).toString('base64url');
  const auth = new URL(`${AUTH_URL}/auth`);
  for (const [k, v] of Object.entries({
    response_type: 'code', client_id: client, redirect_uri: REDIRECT_URI, scope, state, aud,
    code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  })) if (v !== undefined) auth.searchParams.set(k, v);

  const jar = new CookieJar();
  const step = async (url, init = {}) => {
    const res = await fetch(url, { ...init, redirect: 'manual', headers: { ...init.headers, Cookie: jar.header() } });
    jar.store(res);
    return res;
  };
  const fail = async (what, res) => {
    throw Object.assign(new Error(`launch: ${what} -> ${res.status}: ${(await res.text()).slice(0, 300)}`), { status: res.status });
  };

  let url = auth.href;
  for (let hops = 0; hops < 10; hops++) {
    if (url.startsWith(REDIRECT_URI)) {
      const cb = new URL(url).searchParams;
      if (cb.get('error')) throw new Error(`launch: ${cb.get('error')}: ${cb.get('error_description')}`);
      if (cb.get('state') !== state) throw new Error(`launch: state mismatch in ${url}`);
      return postForm('/token', {
        grant_type: 'authorization_code', code: cb.get('code'), redirect_uri: REDIRECT_URI,
        client_id: client, code_verifier: verifier,
      });
    }
    let res = await step(url);
    if (/\/interaction\/[^/]+$/.test(new URL(url).pathname)) {
      if (res.status !== 200) await fail(`GET ${url}`, res);
      await res.body?.cancel();
      res = await step(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user, patient }),
      });
      if (res.status !== 303) await fail(`POST ${url} {user: ${user}, patient: ${patient}}`, res);
    }
    const location = res.headers.get('location');
    if (!location) await fail(`GET ${url}`, res);
    url = new URL(location, url).href;
  }
  throw new Error('launch: too many redirects');
}

/** client_credentials grant for a confidential client; resolves to the token response. */
export function clientCredentials({ clientId, secret = CLIENT_SECRETS[clientId], scope }) {
  return postForm('/token', { grant_type: 'client_credentials', ...(scope && { scope }) }, { Authorization: basicAuth(clientId, secret) });
}

/** RFC 7662 introspection; resolves to the response ({active: false} for a dead token). */
export function introspect(token, { clientId = 'hapi-fhir', secret = CLIENT_SECRETS[clientId] } = {}) {
  return postForm('/token/introspection', { token }, { Authorization: basicAuth(clientId, secret) });
}

/**
 * RFC 7009 revocation. Only the client a token was issued to may revoke it, so
 * unless `clientId` is given the owner is looked up by introspection first;
 * public clients (smart-app) authenticate with their client_id alone.
 * oidc-provider then revokes every token of the same grant (the refresh token
 * and earlier access tokens of a launch too). A dead token is left alone.
 */
export async function revoke(token, { clientId, secret } = {}) {
  clientId ||= (await introspect(token)).client_id;
  if (!clientId) return;
  secret ||= CLIENT_SECRETS[clientId];
  if (secret) await postForm('/token/revocation', { token }, { Authorization: basicAuth(clientId, secret) });
  else await postForm('/token/revocation', { token, client_id: clientId });
}
