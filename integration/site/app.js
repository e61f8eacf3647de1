// The landing page of the demo: lists the ImagingStudies the FHIR server has,
// read through the gateway, with a thumbnail of every series fetched through
// the WADO-RS URL the gateway injected, the archive that holds it (the name of
// the series' Endpoint), and a link that opens the study in the viewer.
// No framework, no build step.
'use strict';

const EXT_WADO_RS = 'https://fhirimaging.github.io/caddy-fhir-imaging/StructureDefinition/wado-rs';
const FHIR = `${location.origin}/fhir`;
const DICOMWEB = `${location.origin}/wado-rs`;
// The viewer is on a port of its own (its prebuilt build serves from the
// root of an origin); ?viewer=<origin> overrides where it is.
const VIEWER = new URLSearchParams(location.search).get('viewer') ||
  `${location.protocol}//${location.hostname}:3000`;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function link(id, href) {
  const a = document.getElementById(id);
  a.href = href;
  a.textContent = href;
}

async function fhirSearch(url) {
  const res = await fetch(url, { headers: { Accept: 'application/fhir+json' } });
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return res.json();
}

/** Every ImagingStudy, with the Endpoints and Patients included, all pages. */
async function loadStudies() {
  const studies = [];
  const included = new Map(); // "Type/id" → resource
  let next = `${FHIR}/ImagingStudy?_include=ImagingStudy:endpoint&_include=ImagingStudy:subject&_count=50`;
  for (let page = 0; next && page < 20; page++) {
    const bundle = await fhirSearch(next);
    for (const e of bundle.entry || []) {
      const r = e.resource;
      if (r.resourceType === 'ImagingStudy') studies.push(r);
      else included.set(`${r.resourceType}/${r.id}`, r);
    }
    next = (bundle.link || []).find((l) => l.relation === 'next')?.url;
  }
  return { studies, included };
}

const studyUID = (is) =>
  ((is.identifier || []).find((i) => i.system === 'urn:dicom:uid')?.value || '').replace(/^urn:oid:/, '');

function patientName(is, included) {
  const p = included.get(is.subject?.reference);
  const n = p?.name?.[0];
  return n ? [...(n.given || []), n.family].filter(Boolean).join(' ') : (is.subject?.reference || 'unknown patient');
}

/** The name of the series' effective WADO-RS Endpoint (its own, else the study's). */
function archiveOf(is, se, included) {
  const contained = new Map((is.contained || []).map((r) => [`#${r.id}`, r]));
  const pick = (refs) => (refs || [])
    .map((r) => contained.get(r.reference) || included.get(r.reference?.replace(/^.*\/(Endpoint\/[^/]+)$/, '$1')))
    .find((ep) => ep && ep.status === 'active' &&
      [].concat(ep.connectionType || []).some((c) => (c.code || c.coding?.[0]?.code) === 'dicom-wado-rs'));
  const ep = pick(se.endpoint) || pick(is.endpoint);
  return ep ? (ep.name || ep.id) : 'no WADO-RS Endpoint';
}

/**
 * Fetch a rendered image and show it. The request asks for image/jpeg
 * explicitly: a browser's own image Accept header (image/avif,image/webp,…)
 * is more than Orthanc 1.10's rendered resource takes.
 */
async function showRendered(img) {
  try {
    const res = await fetch(img.dataset.src, { headers: { Accept: 'image/jpeg' } });
    if (!res.ok) throw new Error(String(res.status));
    img.src = URL.createObjectURL(await res.blob());
  } catch (err) {
    img.dataset.failed = 'true';
    img.replaceWith(el('div', { class: 'noimage', 'data-series': img.dataset.series, 'data-failed': 'true' },
      `no image (${err.message})`));
  }
}

function seriesCard(is, se, included) {
  const url = (se.extension || []).find((x) => x.url === EXT_WADO_RS)?.valueUrl;
  const first = (se.instance || []).find((i) => (i.extension || []).some((x) => x.url === EXT_WADO_RS));
  const instanceURL = first?.extension.find((x) => x.url === EXT_WADO_RS).valueUrl;
  const label = `Series ${se.number ?? ''} ${se.modality?.code || ''} — ${se.description || se.uid}`;
  const figure = el('figure', { class: 'series' });
  if (instanceURL) {
    const img = el('img', {
      alt: `first image of ${label}`, width: '128', height: '128',
      'data-series': se.uid, 'data-src': `${instanceURL}/rendered`,
    });
    figure.append(img);
    showRendered(img);
  } else {
    figure.append(el('div', { class: 'noimage' }, 'no URL injected'));
  }
  figure.append(el('figcaption', {},
    el('span', { class: 'label' }, label),
    el('span', { class: 'archive', 'data-archive': archiveOf(is, se, included) }, archiveOf(is, se, included)),
    url ? el('a', { href: url, class: 'url' }, 'WADO-RS') : ''));
  return figure;
}

function studyCard(is, included) {
  const uid = studyUID(is);
  const viewer = `${VIEWER}/viewer?StudyInstanceUIDs=${encodeURIComponent(uid)}`;
  return el('section', { class: 'study', 'data-study': uid },
    el('h2', {}, `${patientName(is, included)} — ${is.description || 'ImagingStudy'}`),
    el('p', { class: 'meta' },
      `${(is.started || '').slice(0, 10)} · ${is.numberOfSeries ?? is.series?.length ?? 0} series · ${is.numberOfInstances ?? ''} instances · `,
      el('code', {}, uid), ' · ',
      el('a', { href: viewer, class: 'open' }, 'Open in the viewer'), ' · ',
      el('a', { href: `${FHIR}/ImagingStudy/${is.id}` }, 'FHIR')),
    el('div', { class: 'series-list' }, ...(is.series || []).map((se) => seriesCard(is, se, included))));
}

async function main() {
  link('fhir-base', FHIR);
  link('dicomweb-base', DICOMWEB);
  link('viewer-base', VIEWER);
  const status = document.getElementById('status');
  try {
    const { studies, included } = await loadStudies();
    studies.sort((a, b) => studyUID(a).localeCompare(studyUID(b), undefined, { numeric: true }));
    const list = document.getElementById('studies');
    for (const is of studies) list.append(studyCard(is, included));
    status.textContent = `${studies.length} ImagingStudies found through the gateway.`;
    document.body.dataset.loaded = String(studies.length);
  } catch (err) {
    status.textContent = `Could not read the studies: ${err.message}`;
    document.body.dataset.loaded = 'error';
  }
}

main();
