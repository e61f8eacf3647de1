// The demo's landing page (integration/site, served by the gateway's Caddy at /)
// in Debian's Chromium: every seeded study is listed, each series shows a
// picture fetched through the WADO-RS URL the gateway injected (decoded by the
// browser), with the archive that holds it and a link into the viewer. A
// screenshot goes to docs/landing.png for the README.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { FHIR_SERVER, GATEWAY, GW_DICOMWEB, manifest, skip as noStack } from './lib/env.mjs';
import { launch, browserSkip } from './lib/browser.mjs';

const skip = noStack || browserSkip || (FHIR_SERVER !== 'hapi' ? 'the browser tests run once, with HAPI' : false);
const SHOT = fileURLToPath(new URL('../../docs/landing.png', import.meta.url));
const ARCHIVE_NAME = { a: 'Orthanc A WADO-RS', b: 'Orthanc B WADO-RS' };

test('the landing page lists every study with a decoded picture of each series, its archive and a viewer link', { skip, timeout: 90_000 }, async (t) => {
  const { page, diag, close } = await launch({ width: 1200, height: 1500 });
  try {
    await page.goto(`${GATEWAY}/`);
    await page.waitForFunction(() => document.body.dataset.loaded, null, { timeout: 30_000 });
    const loaded = await page.evaluate(() => document.body.dataset.loaded);
    assert.notEqual(loaded, 'error', await page.textContent('#status'));
    // Every picture has arrived (or failed) and been decoded before it is judged.
    await page.waitForFunction(() => [...document.images].every((img) => img.src && img.complete), null, { timeout: 30_000 });
    const shown = await page.evaluate(() => [...document.querySelectorAll('section.study')].map((s) => ({
      uid: s.dataset.study,
      viewer: s.querySelector('a.open')?.href,
      series: [...s.querySelectorAll('figure.series')].map((f) => ({
        uid: f.querySelector('[data-series]')?.dataset.series,
        src: f.querySelector('img')?.dataset.src || '',
        width: f.querySelector('img')?.naturalWidth || 0,
        archive: f.querySelector('.archive')?.dataset.archive,
      })),
    })));
    for (const st of manifest.studies) {
      const s = shown.find((x) => x.uid === st.studyInstanceUID);
      assert.ok(s, `${st.scenario} is listed`);
      assert.match(s.viewer, new RegExp(`:3000/viewer\\?StudyInstanceUIDs=${st.studyInstanceUID.replaceAll('.', '\\.')}$`), `${st.scenario}: viewer link`);
      for (const se of st.series) {
        const f = s.series.find((x) => x.uid === se.seriesInstanceUID);
        assert.ok(f, `${st.scenario} series ${se.number} is shown`);
        assert.ok(f.src.startsWith(`${GW_DICOMWEB}/studies/${st.studyInstanceUID}/series/${se.seriesInstanceUID}/instances/`), `${f.src}: through the injected URL`);
        assert.ok(f.width > 0, `${st.scenario} series ${se.number}: the picture was decoded (${f.src})`);
        assert.equal(f.archive, ARCHIVE_NAME[se.archive], `${st.scenario} series ${se.number}: the archive`);
      }
    }
    await page.screenshot({ path: SHOT, fullPage: true });
    t.diagnostic(`${shown.length} studies, ${shown.reduce((n, s) => n + s.series.length, 0)} pictures; screenshot ${SHOT}`);
  } catch (err) {
    t.diagnostic(diag.report());
    throw err;
  } finally {
    await close();
  }
});
