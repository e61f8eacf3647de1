// A second DICOMweb client, held to the same checks as the Node one: the Python
// dicomweb-client (PyPI; the client of highdicom and the Slim viewer), used with its
// defaults, against the gateway. Its defaults are what the Node suite never sends:
// `multipart/related; type="*/*"` for frames and bulk data (Orthanc refuses it; the
// gateway asks Orthanc for application/octet-stream), and `Host` without the port.
// The checks run in integration/e2e/python/dicomweb_client_check.py (with
// integration/.venv, made by install.sh); each check it reports is a test here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { GATEWAY, skip } from './lib/env.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const python = `${here}../.venv/bin/python`;
const script = `${here}python/dicomweb_client_check.py`;

test('the Python dicomweb-client, with its defaults, through the gateway', { skip }, async (t) => {
  assert.ok(existsSync(python), `${python} is missing: integration/install.sh makes it`);
  const run = spawnSync(python, [script], {
    env: { ...process.env, GATEWAY_URL: GATEWAY },
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(run.status, 0, `the checks did not run to the end (status ${run.status}):\n${run.stderr}`);
  const results = run.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.ok(results.length >= 10, `${results.length} checks reported:\n${run.stdout}\n${run.stderr}`);
  for (const r of results) {
    await t.test(r.check, () => {
      assert.ok(r.ok, r.detail);
      if (r.detail) t.diagnostic(`${r.check}: ${r.detail}`);
    });
  }
});
