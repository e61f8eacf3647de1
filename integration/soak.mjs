// Soak test of the gateway: many concurrent clients doing what FHIR clients and
// viewers do, for a while, against the real stack; then a look at the
// gateway's process (goroutines, open fds, RSS) to see that it came back.
//
//   import { soak, formatSummary } from '../soak.mjs';
//   const r = await soak({ gateway: 'http://127.0.0.1:8000', metricsUrl: 'http://127.0.0.1:8001/metrics',
//                          clients: 200, seconds: 60, manifest });
//
// Read-only: GETs only, on the studies of make-studies.sh's manifest (studies.json) and
// the FHIR resources seed-fhir.mjs wrote for them (ImagingStudy/study-s<n>, Patient/<patient.id>).
// Each of `clients` loops picks a kind of request at random per iteration:
//   fhir-read     GET /fhir/ImagingStudy/<id>
//   fhir-search   GET /fhir/ImagingStudy?identifier=urn:dicom:uid|<uid>&_include=ImagingStudy:endpoint
//   patient-read  GET /fhir/Patient/<id>
//   instance      GET /wado-rs/studies/<st>/series/<se>/instances/<sop>, Accept multipart/related; type="application/dicom"
//   metadata      GET /wado-rs/studies/<st>/series/<se>/metadata
//   frames        GET /wado-rs/studies/<st>/series/<se>/instances/<sop>/frames/1
//   rendered      GET /wado-rs/studies/<st>/series/<se>/instances/<sop>/rendered, Accept image/jpeg
//   qido          GET /wado-rs/studies
// Half of the JSON requests ask for gzip (as browsers do), so the encode path runs too.
// Before the load, a warm-up asks for every target once, one request at a time (not
// counted in the figures; its errors are reported as warmupErrors), so that the load
// starts with the gateway's caches filled.
// An error is a network error, a timeout (timeoutMs, default 30 s) or any status but 200;
// a body that is wrong is an error too. Checked: every ImagingStudy read and search
// (`alwaysVerify`: the resource asked for, and the gateway's WADO-RS URL on every
// series and instance), and every `verifyEvery`-th (50) answer of the other kinds
// (DICOM part SHA-256 = the manifest's, frame size, JPEG magic, the Patient, the
// metadata's instances, every study in QIDO).
//
// The gateway's own health comes from its Prometheus metrics (go_goroutines,
// process_open_fds, process_resident_memory_bytes): once before the load, every
// `sampleSeconds` (5) during it, and after it: `settleSeconds` (5) after the last
// answer, once the client's keep-alive connections were closed, and then, if the
// caller's `settled(before, sample)` says the gateway is not back yet, every 2 s up
// to `maxSettleSeconds` (60). Scrapes use a connection of their own each
// (Connection: close), so they leave nothing open.
import http from 'node:http';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';

const ACCEPT_DICOM = 'multipart/related; type="application/dicom"';
const ACCEPT_FRAMES = 'multipart/related; type="application/octet-stream"';
const ACCEPT_FHIR = 'application/fhir+json';
const ACCEPT_DICOM_JSON = 'application/dicom+json';

export const KINDS = ['fhir-read', 'fhir-search', 'patient-read', 'instance', 'metadata', 'frames', 'rendered', 'qido'];
export const HEALTH_METRICS = {
  goroutines: 'go_goroutines',
  fds: 'process_open_fds',
  rss: 'process_resident_memory_bytes',
};

/** Nearest-rank percentile of a sorted array (ms). */
function pct(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
function latencyStats(values) {
  const s = Float64Array.from(values).sort();
  return { p50: pct(s, 50), p90: pct(s, 90), p99: pct(s, 99), max: s.length ? s[s.length - 1] : NaN };
}

/** One GET; resolves {status, headers, body?, bytes, ms} or {error, ms}. Never rejects. */
function get(agent, url, headers, { keepBody, timeoutMs }) {
  const t0 = performance.now();
  return new Promise((resolve) => {
    let done = false;
    const finish = (r) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ ...r, ms: performance.now() - t0 });
    };
    const req = http.get(url, { agent, headers }, (res) => {
      const chunks = [];
      let bytes = 0;
      res.on('data', (c) => { bytes += c.length; if (keepBody || res.statusCode !== 200) chunks.push(c); });
      res.on('end', () => finish({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), bytes }));
      res.on('error', (e) => finish({ error: `response: ${e.code || e.message}` }));
      res.on('aborted', () => finish({ error: 'response aborted' }));
    });
    const timer = setTimeout(() => {
      finish({ error: `timeout after ${timeoutMs} ms` });
      req.destroy(new Error('timeout'));
    }, timeoutMs);
    req.on('error', (e) => finish({ error: `${e.code || ''} ${e.message}`.trim() }));
  });
}

/** The manifest's studies as the targets of requests. */
function targets(manifest) {
  const studies = manifest.studies.map((st) => ({
    id: `study-${st.scenario.toLowerCase()}`,
    patient: st.patient.id,
    identifier: `urn:dicom:uid|${st.fhir?.identifierValuePrefix ?? ''}${st.studyInstanceUID}`,
    uid: st.studyInstanceUID,
    series: st.series.map((se) => ({ uid: se.seriesInstanceUID, instances: se.instances.length })),
  }));
  const series = manifest.studies.flatMap((st) => st.series.map((se) => ({ st: st.studyInstanceUID, se })));
  const insts = series.flatMap(({ st, se }) => se.instances.map((i) => ({ st, se: se.seriesInstanceUID, ...i })));
  return { studies, series, insts, nStudies: manifest.studies.length };
}

const pickRandom = (a) => a[Math.floor(Math.random() * a.length)];
const EXT_WADO_RS = 'https://fhirimaging.github.io/caddy-fhir-imaging/StructureDefinition/wado-rs';

/** Body checks for sampled answers: a string when wrong, undefined when right. */
function jsonOf(r) {
  let buf = r.body;
  if (/gzip/i.test(r.headers['content-encoding'] || '')) buf = gunzipSync(buf);
  return JSON.parse(buf.toString('utf8'));
}
function checkDicomPart(r, inst) {
  const m = /boundary="?([^";]+)"?/i.exec(r.headers['content-type'] || '');
  if (!m) return `no multipart boundary in Content-Type ${r.headers['content-type']}`;
  const delim = Buffer.from('--' + m[1]);
  const start = r.body.indexOf(delim);
  const hdrEnd = r.body.indexOf('\r\n\r\n', start);
  const end = r.body.indexOf(Buffer.concat([Buffer.from('\r\n'), delim]), hdrEnd + 4);
  if (start < 0 || hdrEnd < 0 || end < 0) return 'malformed multipart body';
  const part = r.body.subarray(hdrEnd + 4, end);
  const got = createHash('sha256').update(part).digest('hex');
  return got === inst.sha256 ? undefined : `DICOM part SHA-256 ${got} (${part.length} bytes), manifest ${inst.sha256} (${inst.size} bytes)`;
}

/** How many targets a kind has (the warm-up asks for each once). */
function targetCount(kind, t) {
  if (kind === 'qido') return 1;
  if (kind === 'metadata') return t.series.length;
  if (['instance', 'frames', 'rendered'].includes(kind)) return t.insts.length;
  return t.studies.length;
}

/** Every series and instance of an ImagingStudy carries the gateway's WADO-RS URL. */
function checkUrls(is, base) {
  const rs = (el) => (el?.extension || []).find((e) => e.url === EXT_WADO_RS)?.valueUrl;
  for (const se of is.series || []) {
    if (!rs(se)?.startsWith(`${base}/wado-rs/`)) return `series ${se.uid} of ${is.id} has no WADO-RS URL on the gateway (${rs(se)})`;
    for (const i of se.instance || []) {
      if (!rs(i)?.startsWith(`${base}/wado-rs/`)) return `instance ${i.uid} of ${is.id} has no WADO-RS URL on the gateway (${rs(i)})`;
    }
  }
  return undefined;
}

/** The request of one iteration: {kind, url, headers, verify(r)}; `pick` chooses the target. */
function makeRequest(kind, base, t, pick = pickRandom) {
  const gz = Math.random() < 0.5 ? { 'Accept-Encoding': 'gzip' } : {};
  switch (kind) {
    case 'fhir-read': {
      const s = pick(t.studies);
      return {
        url: `${base}/fhir/ImagingStudy/${s.id}`, headers: { Accept: ACCEPT_FHIR, ...gz },
        verify: (r) => { const j = jsonOf(r); return j.resourceType === 'ImagingStudy' && j.id === s.id ? checkUrls(j, base) : `got ${j.resourceType}/${j.id}`; },
      };
    }
    case 'fhir-search': {
      const s = pick(t.studies);
      return {
        url: `${base}/fhir/ImagingStudy?identifier=${encodeURIComponent(s.identifier)}&_include=ImagingStudy:endpoint`,
        headers: { Accept: ACCEPT_FHIR, ...gz },
        verify: (r) => {
          const j = jsonOf(r);
          const ids = (j.entry || []).map((e) => `${e.resource?.resourceType}/${e.resource?.id}`);
          if (j.resourceType !== 'Bundle' || !ids.includes(`ImagingStudy/${s.id}`) || !ids.some((i) => i.startsWith('Endpoint/'))) {
            return `Bundle entries ${ids.join(',') || 'none'}`;
          }
          return checkUrls(j.entry.find((e) => e.resource?.id === s.id).resource, base);
        },
      };
    }
    case 'patient-read': {
      const s = pick(t.studies);
      return {
        url: `${base}/fhir/Patient/${s.patient}`, headers: { Accept: ACCEPT_FHIR, ...gz },
        verify: (r) => { const j = jsonOf(r); return j.resourceType === 'Patient' && j.id === s.patient ? undefined : `got ${j.resourceType}/${j.id}`; },
      };
    }
    case 'instance': {
      const i = pick(t.insts);
      return {
        url: `${base}/wado-rs/studies/${i.st}/series/${i.se}/instances/${i.sopInstanceUID}`, headers: { Accept: ACCEPT_DICOM },
        verify: (r) => checkDicomPart(r, i),
      };
    }
    case 'metadata': {
      const { st, se } = pick(t.series);
      return {
        url: `${base}/wado-rs/studies/${st}/series/${se.seriesInstanceUID}/metadata`, headers: { Accept: ACCEPT_DICOM_JSON, ...gz },
        verify: (r) => {
          const j = jsonOf(r);
          const sops = Array.isArray(j) ? j.map((o) => o?.['00080018']?.Value?.[0]).sort().join() : '';
          const want = se.instances.map((i) => i.sopInstanceUID).sort().join();
          return sops === want ? undefined : `instances ${sops || JSON.stringify(j).slice(0, 100)}, want ${want}`;
        },
      };
    }
    case 'frames': {
      const i = pick(t.insts);
      return {
        url: `${base}/wado-rs/studies/${i.st}/series/${i.se}/instances/${i.sopInstanceUID}/frames/1`, headers: { Accept: ACCEPT_FRAMES },
        // 64x64 pixels, 16 bits allocated: one frame is 8192 bytes (plus the multipart framing)
        verify: (r) => (r.body.length >= 8192 && /^multipart\/related/i.test(r.headers['content-type'] || '') ? undefined
          : `${r.body.length} bytes of ${r.headers['content-type']}`),
      };
    }
    case 'rendered': {
      const i = pick(t.insts);
      return {
        url: `${base}/wado-rs/studies/${i.st}/series/${i.se}/instances/${i.sopInstanceUID}/rendered`, headers: { Accept: 'image/jpeg' },
        verify: (r) => (r.body.length > 3 && r.body[0] === 0xff && r.body[1] === 0xd8 && r.body[2] === 0xff ? undefined
          : `not a JPEG (${r.headers['content-type']}, ${r.body.length} bytes)`),
      };
    }
    case 'qido':
      return {
        url: `${base}/wado-rs/studies`, headers: { Accept: ACCEPT_DICOM_JSON, ...gz },
        verify: (r) => {
          const j = jsonOf(r);
          const uids = new Set((Array.isArray(j) ? j : []).map((o) => o?.['0020000D']?.Value?.[0]));
          const missing = t.studies.filter((s) => !uids.has(s.uid)).map((s) => s.uid);
          return missing.length === 0 ? undefined : `studies missing from QIDO: ${missing.join(',')}`;
        },
      };
    default:
      throw new Error(`unknown kind ${kind}`);
  }
}

/** Scrape the health metrics once: {t, goroutines, fds, rss} (null values when the scrape failed). */
export async function sampleHealth(metricsUrl, timeoutMs = 30000) {
  const r = await get(false, metricsUrl, { Connection: 'close' }, { keepBody: true, timeoutMs });
  const out = { t: Date.now(), goroutines: null, fds: null, rss: null };
  if (r.error || r.status !== 200) { out.error = r.error || `status ${r.status}`; return out; }
  const text = r.body.toString('utf8');
  for (const [k, name] of Object.entries(HEALTH_METRICS)) {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
    if (m) out[k] = Number(m[1]);
  }
  return out;
}

/**
 * Run the soak. Returns {clients, seconds, elapsed, requests, errors, rps, kinds: {kind: {requests,
 * errors, verified, p50, p90, p99, max}}, overall: {...}, errorCounts: {"kind status": n},
 * errorSamples: [{kind, url, status|error, body, at}], errorSeconds: {second of the load: n},
 * warmupRequests, warmupErrors, verified, health: {before, during[], peak,
 * afterFirst, after (the last after-sample; .at = seconds after the load), afterSamples[]},
 * clientCpu}. Latencies in ms; rss in bytes; health samples are {t, goroutines, fds, rss}.
 * `settled(before, sample)`, optional: true when the gateway is back (see above).
 */
export async function soak({
  gateway, metricsUrl, clients = 200, seconds = 60, manifest,
  timeoutMs = 30000, verifyEvery = 50, alwaysVerify = ['fhir-read', 'fhir-search'], warmup = true,
  sampleSeconds = 5, settleSeconds = 5, settled, maxSettleSeconds = 60, kinds = KINDS, log = () => {},
}) {
  if (!manifest?.studies?.length) throw new Error('soak: a manifest with studies is needed');
  const base = gateway.replace(/\/+$/, '');
  const t = targets(manifest);
  const before = await sampleHealth(metricsUrl, timeoutMs);
  if (before.goroutines == null || before.fds == null || before.rss == null) {
    throw new Error(`soak: ${metricsUrl} has no ${Object.values(HEALTH_METRICS).join('/')} (${before.error || 'missing'})`);
  }
  log(`before: goroutines ${before.goroutines}, fds ${before.fds}, rss ${(before.rss / 2 ** 20).toFixed(1)} MB`);

  const agent = new http.Agent({ keepAlive: true, maxSockets: clients, maxFreeSockets: clients, scheduling: 'fifo' });
  const newStats = () => Object.fromEntries(kinds.map((k) => [k, { requests: 0, errors: 0, verified: 0, ms: [] }]));
  const errorCounts = {};
  const errorSamples = [];
  const errorSeconds = {}; // second of the load -> errors in it
  const verifyCounters = Object.fromEntries(kinds.map((k) => [k, 0]));
  const during = [];
  let t0 = Date.now();

  const recordError = (stats, kind, url, r, what) => {
    stats[kind].errors++;
    const key = `${stats === warm ? 'warm-up ' : ''}${kind} ${what}`;
    errorCounts[key] = (errorCounts[key] || 0) + 1;
    const at = Math.round((Date.now() - t0) / 1000);
    if (stats !== warm) errorSeconds[at] = (errorSeconds[at] || 0) + 1;
    if (errorSamples.length < 20 || errorCounts[key] === 1) {
      errorSamples.push({
        kind, url, status: r.status, error: r.error, what, ms: Math.round(r.ms), at: stats === warm ? 'warm-up' : at,
        body: r.body ? r.body.toString('utf8', 0, Math.min(r.body.length, 500)) : undefined,
      });
    }
  };

  /** One request and its accounting in `stats`. */
  async function exchange(stats, kind, q, verify) {
    const r = await get(agent, q.url, q.headers, { keepBody: verify, timeoutMs });
    const s = stats[kind];
    s.requests++;
    s.ms.push(r.ms);
    if (r.error) return recordError(stats, kind, q.url, r, r.error.replace(/\d+ ms/, 'N ms'));
    if (r.status !== 200) return recordError(stats, kind, q.url, r, `status ${r.status}`);
    if (verify) {
      let bad;
      try { bad = q.verify(r); } catch (e) { bad = `unreadable body: ${e.message}`; }
      if (bad) recordError(stats, kind, q.url, { ...r, body: Buffer.from(bad) }, 'wrong body');
      else s.verified++;
    }
  }

  // Warm-up, not counted in the figures: every request target once, one after the
  // other, so that the soak measures the gateway with its caches filled, not 200
  // clients waiting on the same first look-ups. Its errors are reported too.
  const warm = newStats();
  if (warmup) {
    for (const kind of kinds) {
      for (let i = 0; i < targetCount(kind, t); i++) {
        await exchange(warm, kind, makeRequest(kind, base, t, (a) => a[i % a.length]), true);
      }
    }
    const n = Object.values(warm).reduce((a, x) => a + x.requests, 0);
    const e = Object.values(warm).reduce((a, x) => a + x.errors, 0);
    log(`warm-up: ${n} requests, ${e} errors in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  }

  const stats = newStats();
  const cpu0 = process.cpuUsage();
  t0 = Date.now();
  const deadline = t0 + seconds * 1000;

  async function client() {
    while (Date.now() < deadline) {
      const kind = pickRandom(kinds);
      const verify = alwaysVerify.includes(kind) || ++verifyCounters[kind] % verifyEvery === 0;
      await exchange(stats, kind, makeRequest(kind, base, t), verify);
    }
  }

  // Health samples during the load: at every multiple of sampleSeconds after the start
  // (one at a time: a tick that passes while a scrape is slow is skipped).
  const stopSampling = new AbortController();
  const sampler = (async () => {
    const period = sampleSeconds * 1000;
    for (;;) {
      try {
        await sleep(period - ((Date.now() - t0) % period), undefined, { signal: stopSampling.signal });
      } catch { break; } // the load is over
      if (Date.now() >= deadline) break;
      const h = await sampleHealth(metricsUrl, timeoutMs);
      h.at = (h.t - t0) / 1000;
      during.push(h);
      const done = Object.values(stats).reduce((a, s) => a + s.requests, 0);
      const errs = Object.values(stats).reduce((a, s) => a + s.errors, 0);
      log(`t=${h.at.toFixed(0)}s: ${done} requests, ${errs} errors; goroutines ${h.goroutines}, fds ${h.fds}, rss ${h.rss == null ? '?' : (h.rss / 2 ** 20).toFixed(1)} MB${h.error ? ` (scrape: ${h.error})` : ''}`);
    }
  })();

  await Promise.all(Array.from({ length: clients }, () => client()));
  const elapsed = (Date.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  agent.destroy(); // the gateway sees our keep-alive connections close
  const tEnd = Date.now();
  stopSampling.abort();
  await sampler;
  // After the load: one sample settleSeconds later; then, when `settled(before, sample)`
  // is given and says no, one every 2 s until it says yes or maxSettleSeconds have
  // passed. Idle pooled connections to the upstreams (2 goroutines and an fd each)
  // go away only when an upstream's idle timeout closes them.
  await sleep(settleSeconds * 1000);
  const afterSamples = [];
  for (;;) {
    const h = await sampleHealth(metricsUrl, timeoutMs);
    h.at = (h.t - tEnd) / 1000;
    afterSamples.push(h);
    log(`after ${h.at.toFixed(0)}s: goroutines ${h.goroutines}, fds ${h.fds}, rss ${h.rss == null ? '?' : (h.rss / 2 ** 20).toFixed(1)} MB${h.error ? ` (scrape: ${h.error})` : ''}`);
    if (!settled || (h.goroutines != null && settled(before, h)) || h.at + 2 > maxSettleSeconds) break;
    await sleep(2000);
  }
  const after = afterSamples[afterSamples.length - 1];

  const peak = {};
  for (const k of Object.keys(HEALTH_METRICS)) {
    const v = during.map((h) => h[k]).filter((x) => x != null);
    peak[k] = v.length ? Math.max(...v) : null;
  }
  const kindsOut = {};
  const allMs = [];
  let requests = 0, errors = 0, verified = 0;
  const warmupRequests = Object.values(warm).reduce((a, x) => a + x.requests, 0);
  const warmupErrors = Object.values(warm).reduce((a, x) => a + x.errors, 0);
  for (const [k, s] of Object.entries(stats)) {
    kindsOut[k] = { requests: s.requests, errors: s.errors, verified: s.verified, ...latencyStats(s.ms) };
    requests += s.requests; errors += s.errors; verified += s.verified;
    for (const x of s.ms) allMs.push(x);
  }
  return {
    clients, seconds, elapsed, requests, errors, verified, rps: requests / elapsed,
    kinds: kindsOut, overall: { requests, errors, ...latencyStats(allMs) },
    errorCounts, errorSamples, errorSeconds, warmupRequests, warmupErrors,
    health: { before, during, peak, after, afterFirst: afterSamples[0], afterSamples },
    clientCpu: (cpu.user + cpu.system) / 1e6 / elapsed, // cores the load generator itself used
  };
}

const mb = (b) => (b == null ? '?' : `${Math.round(b / 2 ** 20)}MB`);
const num = (x) => (x == null ? '?' : String(x));
const ms = (x) => (Number.isFinite(x) ? (x < 10 ? x.toFixed(1) : Math.round(x)) : '?');

/** One line: requests, req/s, errors, p50/p99 per kind, and the health before/peak/after. */
export function formatSummary(r) {
  const h = r.health;
  const kinds = Object.entries(r.kinds).map(([k, s]) => `${k} ${s.requests} ${ms(s.p50)}/${ms(s.p99)}ms${s.errors ? ` ERR ${s.errors}` : ''}`).join(', ');
  const hv = (k, f) => `${f(h.before[k])}/${f(h.peak[k])}/${h.afterFirst !== h.after ? `${f(h.afterFirst[k])}->` : ''}${f(h.after[k])}`;
  return `soak ${r.clients} clients ${r.elapsed.toFixed(0)}s: ${r.requests} requests, ${r.rps.toFixed(0)} req/s, ${r.errors} errors, ` +
    `${r.verified} bodies verified${r.warmupErrors ? `, WARM-UP ERRORS ${r.warmupErrors}` : ''}; p50/p99 overall ${ms(r.overall.p50)}/${ms(r.overall.p99)}ms (max ${ms(r.overall.max)}); ${kinds}; ` +
    `gateway before/peak/after ${h.afterFirst.at.toFixed(0)}s${h.afterFirst !== h.after ? `->${h.after.at.toFixed(0)}s` : ''}: rss ${hv('rss', mb)}, goroutines ${hv('goroutines', num)}, fds ${hv('fds', num)}; ` +
    `load generator ${r.clientCpu.toFixed(2)} cores`;
}
