// OAuth 2.0 / SMART App Launch authorization server for the integration tests,
// built on oidc-provider (panva). Real protocol throughout: authorization code
// with PKCE, client_credentials, refresh tokens, opaque access tokens, RFC 7662
// introspection, RFC 7009 revocation. Only the login/consent UI is scripted:
// POST /interaction/:uid {user, patient} stands in for the login page and the
// patient picker (see README.md next to this file).
//
//   node --no-warnings auth/server.mjs
//   AUTH_PORT (9000)  AUTH_ISSUER (http://127.0.0.1:$AUTH_PORT)
//   AUTH_AUDIENCE (http://127.0.0.1:8000/fhir: the one resource server, the FHIR base)
//   AUTH_GATEWAY_SECRET, AUTH_HAPI_SECRET, AUTH_SEEDER_SECRET (client secrets)
//   AUTH_DEBUG=1      log every request and every error oidc-provider reports
//
// State is kept in memory and lost on restart; signing and cookie keys are new
// on every start.
import crypto from 'node:crypto';
import http from 'node:http';

const PORT = Number(process.env.AUTH_PORT || 9000);
const HOST = '127.0.0.1';
const ISSUER = process.env.AUTH_ISSUER || `http://${HOST}:${PORT}`;
const AUDIENCE = process.env.AUTH_AUDIENCE || 'http://127.0.0.1:8000/fhir';
const DEBUG = process.env.AUTH_DEBUG === '1';
const log = (msg) => process.stderr.write(`[auth] ${msg}\n`);

// oidc-provider 9 warns "Unsupported runtime" on import under Node < 22. It
// runs on Node 20.18+ (URL.parse and crypto.hash are what it needs), so that
// one line is dropped unless AUTH_DEBUG is set.
const consoleWarn = console.warn;
if (!DEBUG) console.warn = (...args) => { if (!/Unsupported runtime/.test(String(args[0]))) consoleWarn(...args); };
const { default: Provider, errors } = await import('oidc-provider');
console.warn = consoleWarn;

// --- scopes, clients, users ------------------------------------------------

// openid, fhirUser and offline_access are OIDC scopes too (they drive the
// id_token and the refresh token); like launch/patient and the FHIR scopes they
// are also granted for the FHIR audience, so they show in the access token's scope.
const OIDC_SCOPES = ['openid', 'fhirUser', 'offline_access'];
const SMART_APP_SCOPES = [
  ...OIDC_SCOPES, 'launch/patient',
  'patient/ImagingStudy.rs', 'patient/ImagingStudy.read', 'patient/*.rs', 'patient/*.read',
  'patient/Patient.rs', 'patient/Endpoint.rs', 'patient/Observation.rs',
  'user/ImagingStudy.rs', 'user/*.rs', 'user/Endpoint.rs',
];

const secret = (name, dflt) => process.env[name] || dflt;
const confidential = (id, clientSecret, grantTypes) => ({
  client_id: id,
  client_secret: clientSecret,
  token_endpoint_auth_method: 'client_secret_basic', // client_secret_post is accepted too
  grant_types: grantTypes,
  response_types: [],
  redirect_uris: [],
});
const smartApp = (id) => ({
  client_id: id,
  token_endpoint_auth_method: 'none', // public: PKCE is required (oidc-provider's default for these)
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: ['http://127.0.0.1:9999/callback'],
});
const CLIENTS = [
  confidential('imaging-gateway', secret('AUTH_GATEWAY_SECRET', 'gateway-secret'), ['client_credentials']),
  confidential('hapi-fhir', secret('AUTH_HAPI_SECRET', 'hapi-secret'), []),
  confidential('seeder', secret('AUTH_SEEDER_SECRET', 'seeder-secret'), ['client_credentials']),
  smartApp('smart-app'),
  smartApp('smart-app-short'),
];

// What each client may get for the FHIR audience. A token carries the scopes
// requested AND listed here; others are silently left out (RFC 6749 3.3).
const CLIENT_POLICY = {
  // register_imaging_study writes with the gateway's own token: ImagingStudy create/update, an Endpoint once.
  'imaging-gateway': { scope: 'system/ImagingStudy.rs system/Endpoint.rs system/Subscription.cruds system/ImagingStudy.cu system/Endpoint.c system/Patient.rs' },
  'hapi-fhir': { scope: '' },
  seeder: { scope: 'system/*.cruds system/*.rs' },
  'smart-app': { scope: SMART_APP_SCOPES.join(' ') },
  'smart-app-short': { scope: SMART_APP_SCOPES.join(' '), accessTokenTTL: 4 },
};
const ACCESS_TOKEN_TTL = 3600;

// patients: the ids the user may pick in a launch/patient launch; '*' = any, or none.
const USERS = {
  bob: { fhirUser: 'Patient/pat-s2', patients: ['pat-s2'] },
  'bob-proxy': { fhirUser: 'RelatedPerson/bob-proxy', patients: ['pat-s2'] }, // caregiver of bob
  alice: { fhirUser: 'Patient/pat-s1', patients: ['pat-s1'] },
  'dr-who': { fhirUser: 'Practitioner/dr-who', patients: '*' },
};

// Launch context (the picked patient) per Grant id. oidc-provider's Grant has a
// fixed payload, so it lives here; every token of the grant (refreshed ones
// too) finds it through token.grantId.
const launchContext = new Map();

// --- storage ---------------------------------------------------------------

// In-memory adapter (oidc-provider's own one is an LRU of 1000 entries, which
// a long test run can overflow, and it warns on every start). Entries expire
// at their expiresIn; a sweep every minute drops them.
const store = new Map(); // key -> {payload, expiresAt}
const grantMembers = new Map(); // grantId -> Set of keys
const sessionByUid = new Map(); // Session uid -> id
const live = (key) => {
  const e = store.get(key);
  if (e && e.expiresAt <= Date.now()) { store.delete(key); return undefined; }
  return e;
};
setInterval(() => {
  for (const key of store.keys()) live(key);
  for (const grantId of grantMembers.keys()) {
    if (!store.has(`Grant:${grantId}`)) { grantMembers.delete(grantId); launchContext.delete(grantId); }
  }
  for (const [uid, id] of sessionByUid) if (!store.has(`Session:${id}`)) sessionByUid.delete(uid);
}, 60_000).unref();

class MemoryAdapter {
  constructor(model) { this.model = model; }
  key(id) { return `${this.model}:${id}`; }
  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    store.set(key, { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
    if (payload.grantId) {
      if (!grantMembers.has(payload.grantId)) grantMembers.set(payload.grantId, new Set());
      grantMembers.get(payload.grantId).add(key);
    }
    if (this.model === 'Session') sessionByUid.set(payload.uid, id);
  }
  async find(id) { return live(this.key(id))?.payload; }
  async findByUid(uid) { return this.find(sessionByUid.get(uid)); }
  async consume(id) {
    const e = live(this.key(id));
    if (e) e.payload.consumed = Math.floor(Date.now() / 1000);
  }
  async destroy(id) {
    store.delete(this.key(id));
    if (this.model === 'Grant') launchContext.delete(id);
  }
  // The tokens of a grant (oidc-provider revokes them all when one is revoked).
  async revokeByGrantId(grantId) {
    for (const key of grantMembers.get(grantId) || []) store.delete(key);
    grantMembers.delete(grantId);
  }
  // findByUserCode is only needed by the device flow, which is off.
}

// --- provider --------------------------------------------------------------

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' };

const provider = new Provider(ISSUER, {
  adapter: MemoryAdapter,
  clients: CLIENTS,
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  clockTolerance: 0, // same host: honour exp to the second (the default is 15 s)
  claims: { openid: ['sub'], fhirUser: ['fhirUser'] }, // also makes fhirUser an OIDC scope
  // SMART apps name the FHIR server with aud=<fhir base>; it becomes the resource indicator.
  extraParams: ['aud'],
  async findAccount(ctx, sub) {
    const user = USERS[sub];
    if (!user) return undefined;
    return { accountId: sub, claims: async () => ({ sub, fhirUser: user.fhirUser }) };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  responseTypes: ['code'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // Access tokens are bound to the FHIR audience; the SMART scopes live there.
    // With userinfo on, oidc-provider would mint openid tokens for /me instead.
    userinfo: { enabled: false },
    resourceIndicators: {
      enabled: true,
      // oneOf: at the token endpoint, the resources of the code (only AUDIENCE passes getResourceServerInfo)
      defaultResource: (ctx, client, oneOf) => oneOf?.[0] ?? ctx.oidc.params.aud ?? AUDIENCE,
      async getResourceServerInfo(ctx, resourceIndicator, client) {
        if (resourceIndicator !== AUDIENCE) throw new errors.InvalidTarget(`unknown resource/aud ${resourceIndicator}`);
        const policy = CLIENT_POLICY[client.clientId];
        return { scope: policy.scope, accessTokenFormat: 'opaque', accessTokenTTL: policy.accessTokenTTL || ACCESS_TOKEN_TTL };
      },
    },
    introspection: {
      enabled: true,
      // Confidential clients (the gateway, HAPI, the seeder) may introspect any
      // token; public clients get {active:false}.
      allowedPolicy: (ctx, client) => client.clientAuthMethod !== 'none',
    },
    revocation: {
      enabled: true,
      // RFC 7009 2.1: only the client the token was issued to may revoke it;
      // any other client is refused with an error.
      async allowedPolicy(ctx, client, token) {
        if (token.clientId !== client.clientId) throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        return true;
      },
    },
  },
  // patient and fhirUser ride on the token, so introspection returns them.
  async extraTokenClaims(ctx, token) {
    if (token.kind !== 'AccessToken' || !token.accountId) return undefined;
    return { fhirUser: USERS[token.accountId]?.fhirUser, ...launchContext.get(token.grantId) };
  },
  // Tokens live their TTL; they do not end with the (cookie) login session.
  expiresWithSession: async () => false,
  ttl: {
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL || ACCESS_TOKEN_TTL,
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL || ACCESS_TOKEN_TTL,
    IdToken: 3600,
    RefreshToken: 24 * 3600,
    Interaction: 3600,
    Session: 24 * 3600,
    Grant: 24 * 3600,
  },
  clientBasedCORS: () => true, // loopback test server: any browser app may call the token endpoint
  // Errors that cannot be redirected to the client (bad client_id, ...): JSON, not an HTML page.
  async renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
});

// --- scripted interaction ---------------------------------------------------

async function readBody(req) {
  const chunks = [];
  let n = 0;
  for await (const c of req) {
    if ((n += c.length) > 65536) throw new errors.InvalidRequest('request body too large');
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return {};
  if (/json/.test(req.headers['content-type'] || '')) {
    try { return JSON.parse(text); } catch { throw new errors.InvalidRequest('body is not JSON'); }
  }
  return Object.fromEntries(new URLSearchParams(text));
}

// A refused login or patient pick: 403 access_denied to the scripted "browser".
const deny = (description) => Object.assign(new Error(description), { status: 403, expose: true, error: 'access_denied' });

// The patient context for a launch, or undefined; throws for a refused pick.
function pickPatient(userId, user, patient, scopes) {
  if (patient && user.patients !== '*' && !user.patients.includes(patient)) {
    throw deny(`${userId} may not pick patient ${patient}`);
  }
  if (!scopes.includes('launch/patient')) return undefined;
  if (patient) return patient;
  // No pick: a user with exactly one patient gets that one; '*' users may launch without one.
  return Array.isArray(user.patients) && user.patients.length === 1 ? user.patients[0] : undefined;
}

// GET  /interaction/:uid -> {uid, prompt, params}
// POST /interaction/:uid {user, patient} (JSON or form) -> login + consent to
//      everything requested, 303 back to /auth/:uid
provider.use(async (ctx, next) => {
  const m = /^\/interaction\/([^/]+)$/.exec(ctx.path);
  if (!m) return next();
  try {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== m[1]) throw new errors.InvalidRequest('interaction uid does not match the cookie');
    const { uid, prompt, params } = details;
    if (ctx.method === 'GET') {
      ctx.body = { uid, prompt, params };
      return;
    }
    if (ctx.method !== 'POST') { ctx.status = 405; return; }

    const body = await readBody(ctx.req);
    const user = USERS[body.user];
    if (!user) throw deny(`unknown user ${body.user}`);
    const scopes = String(params.scope || '').split(' ').filter(Boolean);
    const patient = pickPatient(body.user, user, body.patient, scopes);

    // Consent to what was requested and the client may have; the code, the
    // refresh token and every access token of this grant carry no more.
    const allowed = new Set(CLIENT_POLICY[params.client_id].scope.split(' '));
    const granted = scopes.filter((s) => allowed.has(s));
    const grant = new provider.Grant({ accountId: body.user, clientId: params.client_id });
    grant.addOIDCScope(granted.filter((s) => OIDC_SCOPES.includes(s)).join(' '));
    grant.addResourceScope(params.resource, granted.join(' '));
    const grantId = await grant.save();
    if (patient) launchContext.set(grantId, { patient });

    const returnTo = await provider.interactionResult(ctx.req, ctx.res, {
      login: { accountId: body.user },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
    ctx.redirect(returnTo);
    ctx.status = 303;
  } catch (err) {
    if (!err.expose) throw err; // oidc-provider's errors and deny() are meant for the caller
    ctx.status = err.statusCode || err.status;
    ctx.body = { error: err.error, error_description: err.error_description || err.message };
  }
});

// --- SMART adjustments -------------------------------------------------------

// OIDC Core 11: offline_access counts only with prompt=consent, and
// oidc-provider drops it otherwise (no refresh token). SMART apps ask for
// offline_access without a prompt; consent is always collected here, so say so.
provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/auth' && !ctx.query.prompt &&
      String(ctx.query.scope || '').split(' ').includes('offline_access')) {
    ctx.query = { ...ctx.query, prompt: 'consent' };
  }
  return next();
});

// After oidc-provider has answered: the SMART token response, and 401 for
// introspection/revocation without client authentication.
provider.use(async (ctx, next) => {
  await next();
  const route = ctx.oidc?.route;
  // SMART: the token response names the launch's patient.
  if (route === 'token' && ctx.status === 200 && ctx.body?.access_token) {
    const patient = ctx.oidc.entities.AccessToken?.extra?.patient;
    if (patient) ctx.body.patient = patient;
  }
  // No client authentication at all is invalid_client/401 (RFC 6749 5.2, RFC
  // 7662 2.3); oidc-provider answers it with 400 invalid_request.
  if ((route === 'introspection' || route === 'revocation') && ctx.status === 400 &&
      ctx.body?.error_description === 'no client authentication mechanism provided') {
    ctx.status = 401;
    ctx.body = { error: 'invalid_client', error_description: ctx.body.error_description };
    ctx.set('WWW-Authenticate', `Basic realm="${ISSUER}"`);
  }
});

if (DEBUG) {
  provider.use(async (ctx, next) => {
    await next();
    log(`${ctx.method} ${ctx.path} -> ${ctx.status}`);
  });
  for (const ev of ['authorization.error', 'grant.error', 'introspection.error', 'revocation.error']) {
    provider.on(ev, (ctx, err) => log(`${ev}: ${err.message} ${err.error_description || ''}`));
  }
}
provider.on('server_error', (ctx, err) => log(`server_error on ${ctx.method} ${ctx.path}: ${err.stack}`));

// --- serve -----------------------------------------------------------------

const server = http.createServer(provider.callback());
server.on('error', (err) => { log(`cannot listen on ${HOST}:${PORT}: ${err.message}`); process.exit(1); });
server.listen(PORT, HOST, () => {
  log(`oidc-provider listening on http://${HOST}:${PORT}, issuer ${ISSUER}, audience ${AUDIENCE}`);
});

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
