// The OHIF viewer (the prebuilt @ohif/app, served by the gateway's Caddy on its
// own site, caddyfile/examples/stack.Caddyfile, configured by
// integration/viewer/app-config.js) against the gateway, in Debian's Chromium
// driven by playwright-core (lib/browser.mjs), as a person would use it:
//   - the study list (OHIF's root page) shows every seeded study, found by QIDO
//     through the gateway's /wado-rs (both archives);
//   - /viewer?StudyInstanceUIDs=<S2> opens the split study (series 1 in archive a,
//     series 2 in archive b) and DRAWS both series: the test switches OHIF to a
//     1x2 layout with its layout button and checks, for each viewport, that
//       (a) the frames of the series it shows were fetched through /wado-rs with
//           status 200 (the network),
//       (b) its canvas has non-uniform, non-black pixels (getImageData on the
//           2D canvas cornerstone3D draws into), the two viewports differ, and
//           the image cornerstone decoded has the very pixel values of the
//           DICOM file uploaded to that series' archive (manifest),
//     and that both series' thumbnails (rendered by OHIF from WADO-RS frames)
//     are non-uniform pictures;
//   - saves a screenshot of OHIF showing the split study to
//     docs/viewer-split-study.png (VIEWER_SCREENSHOT overrides the path).
// Runs in the hapi run only (the viewer does not use FHIR; one run is enough).
// Environment: VIEWER_URL (default http://127.0.0.1:3000), CHROMIUM_BIN (/usr/bin/chromium).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FHIR_SERVER, skip as noStack, manifest, byScenario } from './lib/env.mjs';
import { launch, browserSkip } from './lib/browser.mjs';

const VIEWER = (process.env.VIEWER_URL || 'http://127.0.0.1:3000').replace(/\/+$/, '');
const SCREENSHOT = process.env.VIEWER_SCREENSHOT ||
  fileURLToPath(new URL('../../docs/viewer-split-study.png', import.meta.url));
const skip = FHIR_SERVER !== 'hapi'
  ? `the viewer is tested in the hapi run only (FHIR_SERVER=${FHIR_SERVER})`
  : noStack;
const WAIT = 25_000; // any one wait for the viewer; each test is bounded by its timeout too

let b; // {browser, page, diag, close}

before(async () => {
  if (skip) return;
  // Not a skip: the hapi run must not pass without its viewer check.
  if (browserSkip) throw new Error(browserSkip);
  b = await launch({ width: 1280, height: 800, timeout: WAIT });
});
after(async () => { await b?.close(); });

/** Run fn; on failure add what the page fetched wrong and logged to the error. */
async function explain(fn) {
  b.diag.reset();
  try {
    return await fn();
  } catch (e) {
    const extra = `\n--- viewer diagnostics (${b.page.url()}):\n${b.diag.report()}`;
    console.log(extra); // node --test shows assertion messages cut short; the log is whole
    e.message += extra;
    throw e;
  }
}

const pathOf = (u) => new URL(u).pathname;

test(`[${FHIR_SERVER}] OHIF study list shows every seeded study (QIDO through the gateway, both archives)`, { skip, timeout: 60_000 }, () => explain(async () => {
  const { page, diag } = b;
  // OHIF shows PN "Family^Given" as "Family, Given".
  const names = manifest.studies.map((s) => `${s.patient.family}, ${s.patient.given}`);
  const qido = page.waitForResponse((r) => pathOf(r.url()) === '/wado-rs/studies' && r.request().method() === 'GET', { timeout: WAIT });
  await page.goto(`${VIEWER}/`, { waitUntil: 'load', timeout: WAIT });
  const res = await qido;
  assert.equal(res.status(), 200, `QIDO ${res.url()}`);
  const found = (await res.json()).map((d) => d['0020000D']?.Value?.[0]);
  for (const st of manifest.studies) {
    assert.ok(found.includes(st.studyInstanceUID), `${st.scenario} ${st.studyInstanceUID} is in the study list's QIDO answer`);
  }
  try {
    await page.waitForFunction((ns) => ns.every((n) => document.body.innerText.includes(n)), names, { timeout: WAIT });
  } catch {
    const text = await page.evaluate(() => document.body.innerText);
    assert.fail(`the study list shows ${names.join(' / ')}; it shows:\n${text.slice(0, 1500)}`);
  }
  // and nothing OHIF asked the gateway failed
  assert.deepEqual(diag.responses.filter((r) => r.url.includes('/wado-rs/') && r.status !== 200).map((r) => `${r.url} -> ${r.status}`), []);
}));

/** In the page: pixel statistics of a 2D canvas (getImageData). */
function canvasStats(canvas) {
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const n = data.length / 4;
  const hist = new Uint32Array(256);
  let nonBlack = 0, sum = 0, sum2 = 0;
  for (let i = 0; i < data.length; i += 4) {
    const v = Math.round((data[i] + data[i + 1] + data[i + 2]) / 3);
    hist[v]++; sum += v; sum2 += v * v;
    if (v > 8) nonBlack++;
  }
  const mean = sum / n;
  return {
    width: canvas.width, height: canvas.height, nonBlack: nonBlack / n, mean,
    std: Math.sqrt(Math.max(0, sum2 / n - mean * mean)), levels: hist.filter((c) => c > 0).length,
  };
}

/** Stored pixel values of frame 1 of a manifest file (64x64, 16 bits, uncompressed; frames are the last bytes). */
function storedPixels(inst) {
  const file = readFileSync(inst.path);
  const px = file.subarray(file.length - 8192 * inst.frames, file.length - 8192 * (inst.frames - 1));
  return Array.from({ length: 4096 }, (_, i) => px.readUInt16LE(2 * i));
}

const looksLikeAnImage = (s) => s && s.nonBlack > 0.2 && s.levels >= 16 && s.std > 10;

test(`[${FHIR_SERVER}] OHIF opens the split study S2 and draws series from BOTH archives`, { skip, timeout: 60_000 }, (t) => explain(async () => {
  const { page, diag } = b;
  const s2 = byScenario.S2;
  assert.ok(s2 && s2.series.length === 2, 'S2 has two series in the manifest');
  assert.deepEqual(s2.series.map((s) => s.archive).sort(), ['a', 'b'], 'S2 is split over archives a and b');
  const bySeries = new Map(s2.series.map((s) => [s.seriesInstanceUID, s]));
  const t0 = Date.now();
  await page.goto(`${VIEWER}/viewer?StudyInstanceUIDs=${s2.studyInstanceUID}`, { waitUntil: 'load', timeout: WAIT });

  // Both series in the study browser, each with a thumbnail OHIF rendered from WADO-RS frames.
  await page.waitForFunction(() => {
    const t = [...document.querySelectorAll('[data-cy="study-browser-thumbnail"]')];
    return t.length === 2 && t.every((e) => e.querySelector('img')?.complete && e.querySelector('img').naturalWidth > 0);
  }, null, { timeout: WAIT });
  await page.waitForSelector('[data-cy="viewport-pane"] .cornerstone-canvas', { timeout: WAIT });
  const tOpen = Date.now() - t0;

  // 1x2 layout through OHIF's own layout button: series 1 left, series 2 right.
  await page.click('[data-cy="Layout"] button');
  await page.click('div.cursor-pointer:has(#layout-common-1x2)');

  // Wait until both viewports have an image drawn; report what each shows.
  const panes = await page.waitForFunction(({ statsSrc }) => {
    const stats = new Function(`return (${statsSrc})`)();
    const out = [];
    for (const pane of document.querySelectorAll('[data-cy="viewport-pane"]')) {
      const el = pane.querySelector('[data-viewportid]');
      const canvas = pane.querySelector('canvas.cornerstone-canvas');
      const vp = el && window.services?.cornerstoneViewportService?.getCornerstoneViewport(el.getAttribute('data-viewportid'));
      const img = vp?.csImage;
      if (!canvas || !img || !canvas.width) return false;
      const s = stats(canvas);
      if (!(s.nonBlack > 0.2 && s.levels >= 16)) return false; // not drawn yet
      out.push({
        imageId: vp.getCurrentImageId(), text: pane.innerText, stats: s,
        pixels: Array.from(img.getPixelData()), slope: img.slope, intercept: img.intercept,
        scaled: Boolean(img.preScale?.scaled ?? img.isPreScaled),
        // a coarse 32x32 copy of the canvas to compare the two viewports
        small: (() => {
          const c = document.createElement('canvas'); c.width = 32; c.height = 32;
          const x = c.getContext('2d'); x.drawImage(canvas, 0, 0, 32, 32);
          return Array.from(x.getImageData(0, 0, 32, 32).data.filter((_, i) => i % 4 === 0));
        })(),
      });
    }
    return out.length === 2 ? out : false;
  }, { statsSrc: canvasStats.toString() }, { timeout: WAIT, polling: 250 }).then((h) => h.jsonValue());
  const tDrawn = Date.now() - t0;

  const shown = new Set();
  for (const p of panes) {
    // wadors:/wado-rs/studies/<st>/series/<se>/instances/<sop>/frames/1 (app-config.js: wadoRoot /wado-rs)
    const m = /^wadors:(.*\/wado-rs\/studies\/([0-9.]+)\/series\/([0-9.]+)\/instances\/([0-9.]+)\/frames\/(\d+))$/.exec(p.imageId);
    assert.ok(m, `a viewport shows a WADO-RS frame of the gateway: ${p.imageId}`);
    const [, rel, st, se, sop] = m;
    const url = new URL(rel, `${VIEWER}/`).href;
    assert.ok(url.startsWith(`${VIEWER}/wado-rs/`), `${url} is on the viewer's origin (the gateway)`);
    assert.equal(st, s2.studyInstanceUID);
    const series = bySeries.get(se);
    assert.ok(series, `the viewport's series ${se} is one of S2's`);
    const inst = series.instances.find((i) => i.sopInstanceUID === sop);
    assert.ok(inst, `instance ${sop} is in the manifest`);
    shown.add(series.archive);
    const where = `viewport of series ${series.number} (archive ${series.archive}, "${series.description}")`;
    assert.ok(p.text.includes(series.description), `${where}: the overlay names the series; it reads ${JSON.stringify(p.text)}`);
    // (a) the network: this very frame came through the gateway, 200, multipart
    const got = diag.responses.filter((r) => r.url === url);
    assert.ok(got.length > 0, `${where}: OHIF fetched ${url}`);
    assert.ok(got.every((r) => r.status === 200), `${where}: ${url} -> ${got.map((r) => r.status)}`);
    assert.match(got[0].contentType, /^multipart\/related/i, `${where}: frames answer type`);
    // (b) pixels: the canvas shows a picture, and what cornerstone decoded is the stored pixel data
    assert.ok(looksLikeAnImage(p.stats), `${where}: canvas pixels ${JSON.stringify(p.stats)}`);
    // (cornerstone may have applied the modality LUT, rescale slope/intercept, while decoding)
    const expected = storedPixels(inst).map((v) => (p.scaled ? v * (p.slope ?? 1) + (p.intercept ?? 0) : v));
    assert.equal(p.pixels.length, expected.length, `${where}: 64x64 pixels decoded`);
    const diff = p.pixels.findIndex((v, i) => v !== expected[i]);
    assert.equal(diff, -1, `${where}: decoded pixel ${diff} = ${p.pixels[diff]}, the file in archive ${series.archive} has ${expected[diff]}`);
  }
  assert.deepEqual([...shown].sort(), ['a', 'b'], 'the two viewports show series from archive a and archive b');
  const [a, c] = panes.map((p) => p.small);
  const meanDiff = a.reduce((s, v, i) => s + Math.abs(v - c[i]), 0) / a.length;
  assert.ok(meanDiff > 5, `the two viewports show different pictures (mean |diff| ${meanDiff.toFixed(1)} of 255)`);

  // The network, per series: frames of each series (one per archive) fetched through /wado-rs, 200.
  for (const se of s2.series) {
    const frames = diag.responses.filter((r) => r.url.startsWith(`${VIEWER}/wado-rs/studies/${s2.studyInstanceUID}/series/${se.seriesInstanceUID}/instances/`) && /\/frames\/\d+$/.test(r.url));
    assert.ok(frames.length > 0, `frames of series ${se.number} (archive ${se.archive}) were fetched through /wado-rs`);
    assert.ok(frames.every((r) => r.status === 200), `series ${se.number} frames: ${frames.map((r) => `${pathOf(r.url)} -> ${r.status}`).join(', ')}`);
  }
  assert.deepEqual(diag.responses.filter((r) => r.url.includes('/wado-rs/') && r.status !== 200).map((r) => `${r.url} -> ${r.status}`), [], 'no DICOMweb request failed');

  // Thumbnails: OHIF renders them from WADO-RS frames (thumbnailRendering 'wadors'); read their pixels.
  const thumbs = await page.evaluate((statsSrc) => {
    const stats = new Function(`return (${statsSrc})`)();
    return [...document.querySelectorAll('[data-cy="study-browser-thumbnail"]')].map((t) => {
      const img = t.querySelector('img');
      const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
      c.getContext('2d').drawImage(img, 0, 0);
      return { label: t.querySelector('[data-cy="series-description-label"]')?.innerText || t.innerText, stats: stats(c) };
    });
  }, canvasStats.toString());
  for (const se of s2.series) {
    const th = thumbs.find((x) => x.label.includes(se.description));
    assert.ok(th, `a thumbnail for "${se.description}" (archive ${se.archive}); thumbnails: ${thumbs.map((x) => x.label)}`);
    assert.ok(looksLikeAnImage(th.stats), `thumbnail of "${se.description}": ${JSON.stringify(th.stats)}`);
  }

  await page.waitForLoadState('networkidle', { timeout: 5_000 }).catch(() => {}); // let the layout settle
  mkdirSync(dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT });
  t.diagnostic(`S2 opened in ${tOpen} ms, both series drawn in ${tDrawn} ms; screenshot ${SCREENSHOT}`);
}));
