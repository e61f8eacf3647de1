// Helpers for end-to-end tests that talk DICOMweb through dicomweb-client 0.11.3
// (the client OHIF-style viewers use) and check the bytes against the manifest
// written by integration/data/make-studies.sh.
//
//   import { makeClient, retrieveInstanceBytes, sha256, loadManifest, instances,
//            verifyInstance, parseMultipart, fetchMultipart } from './lib/dicomweb.mjs';
//
// dicomweb-client needs an XMLHttpRequest in Node: this module installs xhr2 as
// global.XMLHttpRequest on import (once).
import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
if (!globalThis.XMLHttpRequest) globalThis.XMLHttpRequest = require('xhr2');
const dwc = require('dicomweb-client');
export const DICOMwebClient = dwc.api.DICOMwebClient;

/** A dicomweb-client for a DICOMweb base URL, e.g. http://127.0.0.1:18042/dicom-web or <gateway>/wado-rs. */
export function makeClient(url, { headers = {} } = {}) {
  return new DICOMwebClient({ url: url.replace(/\/+$/, ''), verbose: false, headers });
}

/** Convert whatever dicomweb-client returned (ArrayBuffer, typed array, Buffer) to a Buffer (no copy). */
export function toBuffer(x) {
  if (Buffer.isBuffer(x)) return x;
  if (x instanceof ArrayBuffer) return Buffer.from(x);
  if (ArrayBuffer.isView(x)) return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  throw new TypeError('not binary data: ' + Object.prototype.toString.call(x));
}

export function sha256(data) {
  return createHash('sha256').update(toBuffer(data)).digest('hex');
}

/**
 * WADO-RS retrieve of one instance (multipart/related; type="application/dicom").
 * dicomweb-client decodes the multipart body and returns the first part as an
 * ArrayBuffer; this returns it as a Buffer holding the DICOM Part 10 file.
 */
export async function retrieveInstanceBytes(client, studyInstanceUID, seriesInstanceUID, sopInstanceUID) {
  const part = await client.retrieveInstance({ studyInstanceUID, seriesInstanceUID, sopInstanceUID });
  const buf = toBuffer(part);
  if (buf.length < 132 || buf.toString('latin1', 128, 132) !== 'DICM') {
    throw new Error(`retrieveInstance ${sopInstanceUID}: the part is not a DICOM Part 10 file (${buf.length} bytes)`);
  }
  return buf;
}

/** All parts of a series or study retrieve, as Buffers. */
export async function retrieveSeriesBytes(client, studyInstanceUID, seriesInstanceUID) {
  return (await client.retrieveSeries({ studyInstanceUID, seriesInstanceUID })).map(toBuffer);
}
export async function retrieveStudyBytes(client, studyInstanceUID) {
  return (await client.retrieveStudy({ studyInstanceUID })).map(toBuffer);
}

/** frames/<n> of an instance (1-based frame numbers), as Buffers of uncompressed pixel data. */
export async function retrieveFrames(client, studyInstanceUID, seriesInstanceUID, sopInstanceUID, frameNumbers) {
  const parts = await client.retrieveInstanceFrames({
    studyInstanceUID, seriesInstanceUID, sopInstanceUID, frameNumbers: [].concat(frameNumbers),
  });
  return parts.map(toBuffer);
}

/** Read a studies.json manifest. */
export function loadManifest(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** Flatten a manifest: one entry per instance with its study/series/scenario. */
export function instances(manifest, filter = {}) {
  const out = [];
  for (const st of manifest.studies) {
    for (const se of st.series) {
      for (const inst of se.instances) {
        const row = {
          scenario: st.scenario, studyInstanceUID: st.studyInstanceUID,
          seriesInstanceUID: se.seriesInstanceUID, archive: se.archive, ...inst,
        };
        if (Object.entries(filter).every(([k, v]) => row[k] === v)) out.push(row);
      }
    }
  }
  return out;
}

/** Retrieve one manifest instance through `client` and compare its SHA-256. */
export async function verifyInstance(client, inst) {
  const buf = await retrieveInstanceBytes(client, inst.studyInstanceUID, inst.seriesInstanceUID, inst.sopInstanceUID);
  const got = sha256(buf);
  return { ok: got === inst.sha256, sha256: got, expected: inst.sha256, size: buf.length, expectedSize: inst.size };
}

/** DICOM JSON helper: first value of a tag ("0020000D") in a QIDO/metadata object. */
export function tagValue(obj, tag) {
  const v = obj?.[tag]?.Value;
  return Array.isArray(v) ? v[0] : undefined;
}

/**
 * Minimal multipart/related parser for raw fetch() answers, for tests that need
 * the part headers (dicomweb-client drops them). Returns [{headers, body}].
 */
export function parseMultipart(body, contentType) {
  const buf = toBuffer(body);
  const m = /boundary="?([^";]+)"?/i.exec(contentType || '');
  if (!m) throw new Error('no boundary in Content-Type: ' + contentType);
  const delim = Buffer.from('--' + m[1]);
  const parts = [];
  let pos = buf.indexOf(delim);
  if (pos < 0) throw new Error('boundary not found in body');
  for (;;) {
    pos += delim.length;
    if (buf.toString('latin1', pos, pos + 2) === '--') break; // closing delimiter
    if (buf.toString('latin1', pos, pos + 2) === '\r\n') pos += 2;
    const hdrEnd = buf.indexOf('\r\n\r\n', pos);
    if (hdrEnd < 0) throw new Error('part without header end');
    const headers = {};
    for (const line of buf.toString('latin1', pos, hdrEnd).split('\r\n')) {
      const i = line.indexOf(':');
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    const next = buf.indexOf(Buffer.concat([Buffer.from('\r\n'), delim]), hdrEnd + 4);
    if (next < 0) throw new Error('unterminated multipart body');
    parts.push({ headers, body: buf.subarray(hdrEnd + 4, next) });
    pos = next + 2;
  }
  return parts;
}

/** fetch() a multipart WADO-RS URL and return {status, contentType, parts}. */
export async function fetchMultipart(url, { accept = 'multipart/related; type="application/dicom"', headers = {} } = {}) {
  const res = await fetch(url, { headers: { Accept: accept, ...headers } });
  const contentType = res.headers.get('content-type') || '';
  const body = Buffer.from(await res.arrayBuffer());
  if (!res.ok || !/^multipart\//i.test(contentType)) return { status: res.status, contentType, body, parts: [] };
  return { status: res.status, contentType, parts: parseMultipart(body, contentType) };
}
