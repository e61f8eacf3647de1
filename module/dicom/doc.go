// Package dicom holds the DICOM and DICOMweb logic of the gateway that does
// not depend on Caddy or on an HTTP server: validating DICOM UIDs, parsing
// and rebuilding WADO-RS, QIDO-RS and STOW-RS paths, parsing WADO-URI
// queries, and rewriting the archive URLs found in DICOM JSON answers so that
// they point at the gateway.
//
// Everything here is pure: functions take strings, byte slices or url.Values
// and return values and errors, so they can be unit tested and fuzzed without
// starting a server.
package dicom
