"""The Python dicomweb-client (the DICOMweb client of highdicom and the Slim
viewer), used with its defaults, against the gateway: the same retrieve checks
as the Node client's, by a second implementation.

Run by integration/e2e/python.test.mjs with integration/.venv/bin/python.
Environment: GATEWAY_URL, STUDIES_MANIFEST (make-studies.sh's studies.json).
Prints one JSON object per check on stdout: {"check": name, "ok": bool,
"detail": str}; the Node test turns each into a test of its own. Never exits
early: a check that raises is reported as failed with the exception.
"""

import json
import os
import sys
import traceback
from urllib.parse import urlsplit

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.uri import URI

GATEWAY = os.environ.get("GATEWAY_URL", "http://127.0.0.1:8000").rstrip("/")
# The client as a Python user would make it: no port in Host comes from it
# (requests writes "Host: 127.0.0.1:8000", dicomweb-client overrides it with
# its own host attribute, which lacks the port).
DICOMWEB = GATEWAY + "/wado-rs"
FHIR = GATEWAY + "/fhir"
ARCHIVE_MARKS = [b"127.0.0.1:18042", b"127.0.0.1:18043", b"localhost:18042",
                 b"localhost:18043", b"/dicom-web/", b"/pacs/dicom-web"]

manifest = json.load(open(os.environ["STUDIES_MANIFEST"]))
studies = {s["scenario"]: s for s in manifest["studies"]}
stored = {}  # SOP Instance UID -> (manifest instance, pydicom dataset)
for s in manifest["studies"]:
    for se in s["series"]:
        for i in se["instances"]:
            stored[i["sopInstanceUID"]] = (i, pydicom.dcmread(i["path"]))

# Every answer the client gets is kept, to look for archive addresses in
# headers and bodies (multipart part headers are in the body).
seen = []


def record(resp, *args, **kwargs):
    seen.append((resp.request.method + " " + urlsplit(resp.url).path, resp.status_code,
                 dict(resp.headers), resp.content))


client = DICOMwebClient(url=DICOMWEB)
client._session.hooks["response"].append(record)
results = []


def check(name):
    def wrap(fn):
        try:
            detail = fn()
            results.append({"check": name, "ok": True, "detail": detail or ""})
        except Exception as e:  # noqa: BLE001 - every failure is reported
            tb = traceback.format_exc(limit=3)
            results.append({"check": name, "ok": False, "detail": f"{type(e).__name__}: {e}\n{tb}"[:2000]})
        return fn
    return wrap


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def value(ds_json, tag):
    v = ds_json.get(tag, {}).get("Value", [])
    return v[0] if v else None


@check("QIDO-RS: every study, with the study counts of the whole study")
def _():
    found = client.search_for_studies()
    uids = {value(d, "0020000D") for d in found}
    expect(uids >= {s["studyInstanceUID"] for s in studies.values()}, f"studies found: {sorted(uids)}")
    for s in studies.values():
        d = [x for x in found if value(x, "0020000D") == s["studyInstanceUID"]][0]
        n_series, n_inst = len(s["series"]), sum(len(se["instances"]) for se in s["series"])
        mods = sorted({se["modality"] for se in s["series"]})
        got = (value(d, "00201206"), value(d, "00201208"), sorted(d.get("00080061", {}).get("Value", [])))
        expect(got == (n_series, n_inst, mods), f"{s['scenario']}: series/instances/modalities {got}, want {(n_series, n_inst, mods)}")
    return f"{len(found)} studies; split study S2 counts 2 series / 4 instances"


@check("QIDO-RS: series and instances of the split study")
def _():
    s = studies["S2"]
    series = client.search_for_series(s["studyInstanceUID"])
    expect({value(d, "0020000E") for d in series} == {se["seriesInstanceUID"] for se in s["series"]}, "series of S2")
    inst = client.search_for_instances(s["studyInstanceUID"])
    want = {i["sopInstanceUID"] for se in s["series"] for i in se["instances"]}
    expect({value(d, "00080018") for d in inst} == want, "instances of S2")
    return f"{len(series)} series, {len(inst)} instances"


@check("WADO-RS: every study retrieved whole, pixel data equal to the stored files")
def _():
    n = 0
    for s in studies.values():
        got = client.retrieve_study(s["studyInstanceUID"])
        want = {i["sopInstanceUID"] for se in s["series"] for i in se["instances"]}
        expect({d.SOPInstanceUID for d in got} == want, f"{s['scenario']}: instances retrieved")
        for d in got:
            expect(d.PixelData == stored[d.SOPInstanceUID][1].PixelData, f"{s['scenario']}: pixel data of an instance")
            n += 1
    return f"{n} instances"


@check("WADO-RS: series and instance retrieves")
def _():
    s = studies["S2"]
    for se in s["series"]:
        got = client.retrieve_series(s["studyInstanceUID"], se["seriesInstanceUID"])
        expect(len(got) == len(se["instances"]), "instances of a series")
        i = se["instances"][0]
        d = client.retrieve_instance(s["studyInstanceUID"], se["seriesInstanceUID"], i["sopInstanceUID"])
        expect(d.PixelData == stored[i["sopInstanceUID"]][1].PixelData, "pixel data of an instance")


@check("WADO-RS: frames with the client's default Accept (multipart/related; type=\"*/*\")")
def _():
    n = 0
    for s in studies.values():
        for se in s["series"]:
            i = se["instances"][0]
            frames = client.retrieve_instance_frames(s["studyInstanceUID"], se["seriesInstanceUID"], i["sopInstanceUID"], frame_numbers=[1])
            ds = stored[i["sopInstanceUID"]][1]
            size = ds.Rows * ds.Columns * ds.SamplesPerPixel * ds.BitsAllocated // 8
            expect(len(frames) == 1 and frames[0] == ds.PixelData[:size], f"{s['scenario']}: frame 1 bytes")
            n += 1
    return f"{n} frames, one per series, each equal to the stored pixel data"


@check("WADO-RS: metadata, BulkDataURI on the gateway, bulk data with the client's default Accept")
def _():
    n = 0
    for s in studies.values():
        se = s["series"][-1]
        i = se["instances"][0]
        md = client.retrieve_instance_metadata(s["studyInstanceUID"], se["seriesInstanceUID"], i["sopInstanceUID"])
        uri = md["7FE00010"]["BulkDataURI"]
        expect(uri.startswith(DICOMWEB + "/"), f"BulkDataURI {uri} is not on {DICOMWEB}")
        data = client.retrieve_bulkdata(uri)
        expect(len(data) == 1 and data[0] == stored[i["sopInstanceUID"]][1].PixelData, "bulk data bytes")
        n += 1
    return f"{n} bulk data retrieves"


@check("WADO-RS: rendered instance (JPEG)")
def _():
    s = studies["S3"]
    se = s["series"][0]
    img = client.retrieve_instance_rendered(s["studyInstanceUID"], se["seriesInstanceUID"], se["instances"][0]["sopInstanceUID"])
    expect(img[:2] == b"\xff\xd8", f"not a JPEG: {img[:8]!r}")


@check("every injected URL of every ImagingStudy, read with requests from the gateway's FHIR API, retrieves with the client")
def _():
    bundle = requests.get(FHIR + "/ImagingStudy", params={"_count": "100"}, headers={"Accept": "application/fhir+json"}, hooks={"response": record}).json()
    n_rs = n_uri = 0
    ours = {s["studyInstanceUID"] for s in studies.values()}
    for e in bundle.get("entry", []):
        ids = [i.get("value", "") for i in e["resource"].get("identifier", []) if i.get("system") == "urn:dicom:uid"]
        if not any(v.removeprefix("urn:oid:") in ours for v in ids):
            continue  # made by another test file, not one of the stored studies
        for se in e["resource"].get("series", []):
            for inst in se.get("instance", []):
                for x in inst.get("extension", []):
                    url = x.get("valueUrl") or x.get("valueUri")
                    if not url:
                        continue
                    if url.endswith("/wado-rs") or "/wado-rs/" in url:
                        uri = URI.from_string(url)
                        c = DICOMwebClient(url=uri.base_url)
                        c._session.hooks["response"].append(record)
                        d = c.retrieve_instance(uri.study_instance_uid, uri.series_instance_uid, uri.sop_instance_uid)
                        expect(d.PixelData == stored[d.SOPInstanceUID][1].PixelData, f"{url}: pixel data")
                        n_rs += 1
                    elif "/wado?" in url:
                        r = requests.get(url, hooks={"response": record})
                        expect(r.status_code == 200, f"{url}: {r.status_code}")
                        uid = dict(p.split("=", 1) for p in urlsplit(url).query.split("&"))["objectUID"]
                        i, _ = stored[uid]
                        if "application%2Fdicom" in url or "application/dicom" in url:
                            import hashlib
                            expect(hashlib.sha256(r.content).hexdigest() == i["sha256"], f"{url}: SHA-256")
                        n_uri += 1
    expect(n_rs >= len(stored) - 1, f"{n_rs} WADO-RS instance URLs for {len(stored)} instances")
    expect(n_uri > 0, "no WADO-URI URL")
    return f"{n_rs} WADO-RS and {n_uri} WADO-URI instance URLs"


@check("no archive address in any header or body the client was given")
def _():
    expect(len(seen) > 20, f"only {len(seen)} answers recorded")
    bad = []
    for what, status, headers, body in seen:
        for k, v in headers.items():
            if any(m.decode() in v for m in ARCHIVE_MARKS):
                bad.append(f"{what} {status}: header {k}: {v}")
        for m in ARCHIVE_MARKS:
            if m in body:
                j = body.index(m)
                bad.append(f"{what} {status}: body has {body[max(0, j - 60):j + 40]!r}")
    expect(not bad, "\n".join(bad[:5]))
    return f"{len(seen)} answers"


@check("an archive's error is answered in the gateway's words")
def _():
    s = studies["S1"]
    se = s["series"][0]
    # A frame number beyond the instance's one frame: the archive refuses it.
    try:
        client.retrieve_instance_frames(s["studyInstanceUID"], se["seriesInstanceUID"], se["instances"][0]["sopInstanceUID"], frame_numbers=[7])
    except requests.HTTPError as e:
        r = e.response
        expect(400 <= r.status_code < 500, f"status {r.status_code}")
        expect(r.headers.get("Content-Type", "").startswith("application/json"), f"Content-Type {r.headers.get('Content-Type')}")
        msg = r.json().get("message", "")
        expect(msg and "orthanc" in msg.lower() or "archive" in msg, f"message {msg!r}")
        return f"{r.status_code}: {msg}"
    raise AssertionError("frame 7 of a one-frame instance was served")


for r in results:
    print(json.dumps(r), flush=True)
sys.exit(0)
