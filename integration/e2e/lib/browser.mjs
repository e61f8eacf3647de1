// Debian's Chromium (/usr/bin/chromium, apt package `chromium`, installed by
// integration/install.sh) driven by playwright-core, for tests that look at a
// page as a person would (e2e/viewer.test.mjs, e2e/site.test.mjs). No browser is
// ever downloaded. `browserSkip` is a skip reason when /usr/bin/chromium is missing.
//
//   import { launch } from './lib/browser.mjs';
//   const { browser, page, diag, close } = await launch({ width: 1280, height: 800 });
//   ...; console.log(diag.report()); await close();
//
// `diag` records, for diagnostics on failure: failed requests (network errors
// and HTTP status >= 400), console errors, page errors, and every response
// ({url, status, method, contentType, accept}) so a test can check what the
// page fetched.
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

/** The flags this machine needs (no GPU, no network but loopback, root). */
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** Why a browser test cannot run here, or false. */
export const browserSkip = existsSync(CHROMIUM) ? false : `${CHROMIUM} missing (run integration/install.sh)`;

/**
 * Launch Chromium and open a page of the given size. playwright's launch() starts
 * Chromium with a fresh temporary --user-data-dir of its own (deleted on close).
 * Returns {browser, context, page, diag, close}.
 */
export async function launch({ width = 1280, height = 800, timeout = 30_000, args = [] } = {}) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...args],
    timeout,
  });
  const context = await browser.newContext({ viewport: { width, height } });
  const diag = watch(context);
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  const close = () => browser.close().catch(() => {});
  return { browser, context, page, diag, close };
}

/** Record responses, failed requests, console errors and page errors of every page of a context. */
export function watch(context) {
  const netFailures = []; // strings: requests that got no answer
  const diag = {
    responses: [], // {method, url, status, contentType, accept, resourceType}
    consoleErrors: [], // strings
    pageErrors: [], // strings
    /** Failed requests: no answer, or an HTTP status >= 400 (with the Accept header sent). */
    get failed() {
      return [...netFailures, ...this.responses.filter((r) => r.status >= 400)
        .map((r) => `${r.method} ${r.url} (Accept: ${r.accept || '-'}) -> ${r.status}`)];
    },
    /** Forget what was recorded so far (e.g. between two tests on one page). */
    reset() {
      netFailures.length = 0; this.responses.length = 0; this.consoleErrors.length = 0; this.pageErrors.length = 0;
    },
    report() {
      const lines = [];
      const failed = this.failed;
      if (failed.length) lines.push(`failed requests (${failed.length}):`, ...failed.slice(0, 40).map((l) => `  ${l}`));
      if (this.consoleErrors.length) lines.push(`console errors (${this.consoleErrors.length}):`, ...this.consoleErrors.slice(0, 40).map((l) => `  ${l}`));
      if (this.pageErrors.length) lines.push(`page errors (${this.pageErrors.length}):`, ...this.pageErrors.slice(0, 20).map((l) => `  ${l}`));
      return lines.join('\n') || 'no failed requests, console errors or page errors';
    },
  };
  const hook = (page) => {
    page.on('console', (msg) => {
      if (msg.type() === 'error') diag.consoleErrors.push(`${msg.text()}`.slice(0, 500));
    });
    page.on('pageerror', (err) => diag.pageErrors.push(String(err?.stack || err).slice(0, 800)));
    page.on('requestfailed', (req) => {
      netFailures.push(`${req.method()} ${req.url()} -> ${req.failure()?.errorText || 'failed'}`);
    });
    page.on('response', (res) => {
      const req = res.request();
      const entry = {
        method: req.method(), url: res.url(), status: res.status(),
        contentType: res.headers()['content-type'] || '', accept: req.headers().accept || '',
        resourceType: req.resourceType(),
      };
      diag.responses.push(entry);
      // headers() has what the page set; the Accept the browser itself adds (e.g. to an
      // <img>'s request) is only in allHeaders().
      req.allHeaders().then((h) => { entry.accept = h.accept || entry.accept; }, () => {});
    });
  };
  context.pages().forEach(hook);
  context.on('page', hook);
  return diag;
}
