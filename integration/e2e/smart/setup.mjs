// Shared by the access-control end-to-end tests (integration/e2e/smart/*.test.mjs),
// which run against the hapi-smart stack of integration/run-e2e.sh: HAPI enforcing
// SMART tokens, the authorization server of integration/auth, and the gateway with
// caddyfile/examples/smart.Caddyfile. Patient A of the issue is Bob (pat-s2): the
// split study S2 (archives a and b) and the restricted S5 (archive a) are his;
// patient B is Alice (pat-s1, S1). Bob's proxy (bob-proxy) acts for Bob but may
// not see S5.
import { launch, clientCredentials } from '../lib/smart.mjs';
import { FHIR_SERVER, GATEWAY, byScenario, skip as noStack } from '../lib/env.mjs';

export const skip = noStack || (FHIR_SERVER !== 'hapi-smart' ? `access control runs against hapi-smart, not ${FHIR_SERVER}` : false);
export const METRICS = process.env.GATEWAY_METRICS_URL || 'http://127.0.0.1:8001/metrics';
export const S1 = byScenario.S1;
export const S2 = byScenario.S2;
export const S5 = byScenario.S5;
export const DECISION_TTL_MS = 5000; // smart.Caddyfile's decision_ttl

const patientScopes = 'launch/patient openid fhirUser patient/ImagingStudy.rs patient/Patient.rs';

/** The tokens the tests use, each from a real launch or grant. */
export async function tokens() {
  const t = async (p) => (await p).access_token;
  return {
    bob: await t(launch({ user: 'bob', patient: 'pat-s2', scope: patientScopes })),
    bobProxy: await t(launch({ user: 'bob-proxy', patient: 'pat-s2', scope: patientScopes })),
    alice: await t(launch({ user: 'alice', patient: 'pat-s1', scope: patientScopes })),
    doctor: await t(launch({ user: 'dr-who', scope: 'openid fhirUser user/ImagingStudy.rs user/Endpoint.rs' })),
    observations: await t(launch({ user: 'bob', patient: 'pat-s2', scope: 'launch/patient patient/Observation.rs' })),
    system: await t(clientCredentials({ clientId: 'seeder', scope: 'system/*.rs' })),
  };
}

export const bearer = (token) => (token ? { Authorization: `Bearer ${token}` } : {});

/** GET through the gateway; returns {status, headers, text, json, buf}. */
export async function gw(path, token, headers = {}) {
  const res = await fetch(GATEWAY + path, { headers: { ...bearer(token), ...headers } });
  const buf = Buffer.from(await res.arrayBuffer());
  const text = buf.toString('utf8');
  let json;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json, buf };
}

/** One value of a Prometheus text exposition (0 when absent). */
export async function metric(name, labels) {
  const text = await (await fetch(METRICS)).text();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    if (want.every((l) => line.includes(l))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
