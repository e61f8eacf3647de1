/**
 * OHIF v3 configuration (window.config) for the prebuilt viewer of @ohif/app
 * 3.13.2 (integration/node_modules/@ohif/app/dist), served by the second site of
 * caddyfile/examples/stack.Caddyfile (http://127.0.0.1:3000, VIEWER_PORT), which
 * serves this file as /app-config.js in place of the dist's own.
 *
 * One DICOMweb data source: the caddy-fhir-imaging gateway, on the same origin
 * (/wado-rs is its dicomweb handler, /wado its wado_uri handler), so no CORS is
 * involved. The gateway sends each request to the archive that holds the study
 * or series: QIDO /wado-rs/studies lists the studies of both Orthancs, and a
 * split study's series come from different Orthancs.
 *
 * The prebuilt bundle registers its extensions and modes at build time (the
 * default, cornerstone, measurement-tracking ... extensions; the basic viewer
 * mode at /viewer, segmentation, ...), so `extensions` and `modes` stay empty,
 * as in the dist/app-config.js it ships. Settings not listed here keep the
 * values of that file / OHIF's defaults.
 *
 * Deliberately NOT enabled: the local-file data source (dicomlocal), the
 * URL-driven ones (dicomjson, dicomwebproxy), `?configUrl=`
 * (dangerouslyUseDynamicConfig) and `?customization=` URL loading
 * (customizationUrlPrefixes).
 *
 * Checked by integration/e2e/viewer.test.mjs (the study list; the split study
 * S2 drawn from both archives).
 */
/** @type {AppTypes.Config} */
window.config = {
  name: 'caddy-fhir-imaging',
  routerBasename: '/',
  extensions: [],
  modes: [],
  customizationService: {
    // No onboarding tour ("Scrolling Through Images 1/11"): it covers the viewport
    // on the first visit of every browser profile, i.e. in every test run.
    'ohif.tours': { $set: [] },
  },
  // The "for investigational use only" banner covers the bottom of the page on
  // every new session; this is a test/demo stack.
  investigationalUseDialog: { option: 'never' },
  showStudyList: true,
  // Image-decoding web workers; the machines here have 2 cores.
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: true,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  groupEnabledModesFirst: true,
  maxNumRequests: {
    interaction: 100,
    thumbnail: 5,
    // HTTP/1.1 to one origin: the browser opens at most 6 connections anyway.
    prefetch: 10,
  },
  showErrorDetails: 'always',
  defaultDataSourceName: 'gateway',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'gateway',
      configuration: {
        friendlyName: 'caddy-fhir-imaging gateway',
        name: 'gateway',
        // Same origin. Relative roots are enough for OHIF 3.13 (image ids become
        // "wadors:/wado-rs/...", fetched relative to the page); the gateway's
        // own answers (RetrieveURL, BulkDataURI) are absolute on this origin.
        qidoRoot: '/wado-rs',
        wadoRoot: '/wado-rs',
        wadoUriRoot: '/wado',
        // OHIF sends includefield anyway (comma list, URL-encoded as %2C, which
        // Orthanc 1.10 does not split: the study list shows "No Description").
        qidoSupportsIncludeField: false,
        supportsReject: false,
        dicomUploadEnabled: false,
        // Pixels as WADO-RS frames, decoded in the browser (cornerstone3D).
        imageRendering: 'wadors',
        // Thumbnails drawn by OHIF from the same WADO-RS frames: Orthanc 1.10
        // (DICOMweb plugin 1.7) has no .../thumbnail resource (404), which the
        // 'thumbnail' setting of the shipped config would ask for.
        thumbnailRendering: 'wadors',
        // Series metadata series by series, the first series drawn early.
        enableStudyLazyLoad: true,
        // Orthanc's QIDO: no fuzzy matching; '*' wildcards in PatientName etc.
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        // A real QIDO/WADO server (not a static S3-style tree): no client-side filtering.
        staticWado: false,
        // The Accept header of frame (and bulk data) requests. Orthanc 1.10's
        // DICOMweb plugin answers 400 to multipart/related; type="*/*"; ask for
        // what it sends: uncompressed frames, any stored transfer syntax. This is
        // also the exact (unquoted) form the Orthanc team's own OHIF plugin uses;
        // OHIF 3.13's default, type="application/octet-stream";
        // transfer-syntax="*" (quoted), is accepted too here, but pinning it
        // keeps a later OHIF default from sending */*.
        acceptHeader: ['multipart/related; type=application/octet-stream; transfer-syntax=*'],
        omitQuotationForMultipartRequest: true,
        // Metadata carries PixelData (and other large values) as BulkDataURI, which
        // the gateway rewrites onto this origin; let OHIF fetch such values from it.
        bulkDataURI: {
          enabled: true,
        },
      },
    },
  ],
};
