"""Writes what make bench measured into docs/PERFORMANCE.md and its plots.

    python3 report.py RESULTS_DIR OUT_DIR

RESULTS_DIR holds results.tsv, gobench.txt and env.tsv, written by bench.sh.
The part of OUT_DIR/PERFORMANCE.md between "<!-- bench:begin -->" and
"<!-- bench:end -->" is replaced (the file is created if missing); the plots
are OUT_DIR/perf-rewrite-size.png and OUT_DIR/perf-concurrency.png, drawn
with gnuplot. Only the standard library is used.
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def rng(xs, fmt):
    return (fmt % min(xs)) + "–" + (fmt % max(xs)) if xs else "?"


def read(res):
    rows = defaultdict(list)
    with open(os.path.join(res, "results.tsv")) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            rows[parts[0]].append(parts[1:])
    env = {}
    with open(os.path.join(res, "env.tsv")) as f:
        for line in f:
            k, v = line.rstrip("\n").split("\t", 1)
            env[k] = v
    bench = defaultdict(lambda: defaultdict(list))
    pat = re.compile(r"^Benchmark(\S+?)-\d+\s+\d+\s+([\d.]+) ns/op(?:\s+[\d.]+ MB/s)?\s+(\d+) B/op\s+(\d+) allocs/op")
    with open(os.path.join(res, "gobench.txt")) as f:
        for line in f:
            m = pat.match(line)
            if m:
                name = m.group(1)
                bench[name]["ns"].append(float(m.group(2)))
                bench[name]["bytes"].append(int(m.group(3)))
                bench[name]["allocs"].append(int(m.group(4)))
    return rows, env, bench


def mib(b):
    return b / 1048576


def verdict(ok):
    return "**met**" if ok else "**not met**"


def main(res, out):
    rows, env, bench = read(res)
    load = defaultdict(lambda: defaultdict(list))  # (body, server) -> metric -> values
    for body, srv, _run, rps, bps, p50, p99, err in rows["load"]:
        d = load[(body, srv)]
        d["rps"].append(float(rps))
        d["bps"].append(float(bps))
        d["p50"].append(float(p50))
        d["p99"].append(float(p99))
        if err != "-":
            d["err"].append(err)
    sizes = {(b, s): (int(i), int(o), int(up), int(u)) for b, s, i, o, up, u in rows["size"]}
    med = lambda body, srv, k: median(load[(body, srv)][k])

    lines = [BEGIN, ""]
    lines.append("## Load runs and in-process benchmarks (`make bench`)")
    lines.append("")
    lines.append("Written by `make bench` (`integration/bench/bench.sh`); everything in this")
    lines.append("section comes from one run of it. Every figure is a median over the runs;")
    lines.append("ratios compare servers measured in the same run, taking turns.")
    lines.append("")
    lines.append("| | |")
    lines.append("| --- | --- |")
    for k in ("machine", "go", "caddy", "nginx", "wrk", "commit", "date", "settings"):
        if k in env:
            lines.append("| %s | %s |" % (k, env[k]))
    lines.append("")
    lines.append("The FHIR server is a static Caddy `file_server` on loopback serving the bodies of")
    lines.append("`integration/bench/fixtures.go`; the archives are two more, answering every")
    lines.append("retrieve with 1 GiB. In front of them, each its own process: the same Caddy")
    lines.append("binary as plain `reverse_proxy` (the baseline), the gateway (`fhir_rewrite` +")
    lines.append("`reverse_proxy` with its defaults, and `dicomweb`), and Debian's nginx with")
    lines.append("`sub_filter` swapping the FHIR base (`integration/bench/nginx.conf`). The")
    lines.append("client is `wrk -t1 --latency` with the connections above. All of them share")
    lines.append("the cores.")
    lines.append("")
    names = {"one": "one ImagingStudy, 3 series × 50 instances", "search": "searchset of 100 such studies, Endpoints `_include`d",
             "obs": "searchset of 3,000 Observations, base swap only"}
    lines.append("| body | server | in → out | req/s | output MB/s | p50 ms | p99 ms |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for body in ("one", "search", "obs"):
        for srv in ("plain", "gateway", "nginx"):
            i, o, _, _ = sizes[(body, srv)]
            d = load[(body, srv)]
            err = " (errors: %s)" % ", ".join(d["err"]) if d["err"] else ""
            lines.append("| %s | %s | %.1f → %.1f KB | %.0f (%s) | %.1f | %.2f | %.2f |%s" % (
                names[body] if srv == "plain" else "", {"plain": "plain `reverse_proxy`", "gateway": "gateway",
                                                       "nginx": "nginx `sub_filter`"}[srv],
                i / 1000, o / 1000, med(body, srv, "rps"), rng(d["rps"], "%.0f"), mib(med(body, srv, "bps")),
                med(body, srv, "p50"), med(body, srv, "p99"), err))
    lines.append("")

    # The targets of the performance issue.
    t = []
    r = med("obs", "gateway", "rps") / med("obs", "nginx", "rps")
    t.append(("Base swap of the Observation searchset: gateway req/s ÷ nginx req/s ≥ 1.0", "%.2f" % r, r >= 1.0))
    r = med("search", "gateway", "bps") / med("search", "nginx", "bps")
    t.append(("100-study searchset: gateway output bytes/s ÷ nginx's ≥ 1.0", "%.2f" % r, r >= 1.0))
    r = med("search", "gateway", "p50") / med("search", "plain", "p50")
    t.append(("100-study searchset: gateway p50 ÷ plain `reverse_proxy` p50 ≤ 2", "%.2f" % r, r <= 2.0))
    r = med("one", "gateway", "bps") / med("one", "plain", "bps")
    t.append(("One ImagingStudy: gateway output bytes/s ÷ plain's ≥ 0.9", "%.2f" % r, r >= 0.9))
    r = med("one", "gateway", "p99") / med("one", "plain", "p99")
    t.append(("One ImagingStudy: gateway p99 ÷ plain's ≤ 1.10", "%.2f" % r, r <= 1.10))
    stream = defaultdict(list)
    hwm = {}
    for srv, _run, speed, size, before, peak in rows["stream"]:
        stream[srv].append(float(speed))
        hwm.setdefault(srv, (int(before), int(peak)))
        hwm[srv] = (min(hwm[srv][0], int(before)), max(hwm[srv][1], int(peak)))
    if stream["plain"] and stream["gateway"]:
        r = median(stream["gateway"]) / median(stream["plain"])
        t.append(("1 GiB WADO-RS retrieve: gateway MB/s ÷ plain's ≥ 0.95", "%.2f (%.0f against %.0f MiB/s)" % (
            r, mib(median(stream["gateway"])), mib(median(stream["plain"]))), r >= 0.95))
        before, peak = hwm["gateway"]
        t.append(("1 GiB WADO-RS retrieve: gateway memory stays flat", "RSS %.0f MiB before, peak %.0f MiB" % (before / 1024, peak / 1024),
                  peak - before < 64 * 1024))
    one = bench.get("GatewayRewrite/impl=one-pass")
    before = bench.get("GatewayRewrite/impl=before")
    if one and before:
        ms, b = median(one["ns"]) / 1e6, median(one["bytes"])
        bms = median(before["ns"]) / 1e6
        t.append(("In process, the whole rewrite of the 2.2 MB searchset ≤ 8 ms", "%.1f ms (the two passes before: %.1f ms, %.1f× as long)" % (ms, bms, bms / ms), ms <= 8))
        t.append(("In process, ≤ 8 MB allocated for it", "%.1f MB (before: %.1f MB)" % (b / 1e6, median(before["bytes"]) / 1e6), b <= 8e6))
    lines.append("### The targets")
    lines.append("")
    lines.append("| target | measured | |")
    lines.append("| --- | --- | --- |")
    for name, val, ok in t:
        lines.append("| %s | %s | %s |" % (name, val, verdict(ok)))
    lines.append("")

    lines.append("### In process (`go test -bench GatewayRewrite ./module/fhirjson/`)")
    lines.append("")
    lines.append("The searchset rebased and injected by the one pass, against the pipeline")
    lines.append("before it (the base swap over the whole body, then the gjson scan and the")
    lines.append("rewrite; kept in `reference_test.go` as the fuzzing oracle), same input,")
    lines.append("same run. The output buffer is reused, as `fhir_rewrite` does with its pool.")
    lines.append("")
    lines.append("| benchmark | time per body | allocated | allocations |")
    lines.append("| --- | --- | --- | --- |")
    for name in sorted(bench):
        d = bench[name]
        lines.append("| `%s` | %s ms | %.1f MB | %d |" % (name, rng([x / 1e6 for x in d["ns"]], "%.1f"), median(d["bytes"]) / 1e6, median(d["allocs"])))
    lines.append("")

    # Plots.
    size_rows = []
    for name, d in bench.items():
        m = re.match(r"GatewayRewriteSize/entries=(\d+)/impl=(\S+)", name)
        if m:
            size_rows.append((int(m.group(1)), m.group(2), median(d["ns"]) / 1e6, median(d["bytes"]) / 1e6))
    tmp = tempfile.mkdtemp()
    dat = os.path.join(tmp, "size.dat")
    with open(dat, "w") as f:
        for impl in ("one-pass", "before"):
            for n, i, ms, mb in sorted(r for r in size_rows if r[1] == impl):
                f.write("%d %f %f\n" % (n, ms, mb))
            f.write("\n\n")
    sweep = defaultdict(dict)
    for c, srv, rps, *_ in rows["sweep"]:
        sweep[srv][int(c)] = float(rps)
    sdat = os.path.join(tmp, "sweep.dat")
    with open(sdat, "w") as f:
        for srv in ("plain", "gateway", "nginx"):
            for c in sorted(sweep[srv]):
                f.write("%d %f\n" % (c, sweep[srv][c]))
            f.write("\n\n")
    size_png = os.path.join(out, "perf-rewrite-size.png")
    conc_png = os.path.join(out, "perf-concurrency.png")
    gp = """
set terminal pngcairo size 960,400 font ",10" noenhanced
set output "%(size_png)s"
set multiplot layout 1,2 title "FHIR rewrite of a searchset against its size (in process; median of runs)"
set logscale xy
set xlabel "Bundle entries (1 series, 5 instances each)"
set key top left
set grid
set ylabel "ms per body"
plot "%(dat)s" index 0 using 1:2 with linespoints title "one pass", "%(dat)s" index 1 using 1:2 with linespoints title "before (two passes)"
set ylabel "MB allocated per body"
plot "%(dat)s" index 0 using 1:3 with linespoints title "one pass", "%(dat)s" index 1 using 1:3 with linespoints title "before (two passes)"
unset multiplot
set output "%(conc_png)s"
set terminal pngcairo size 720,420 font ",10" noenhanced
set title "Throughput against concurrency: the 100-study searchset (wrk -t1)"
set logscale x 2
unset logscale y
set xlabel "connections"
set ylabel "requests per second"
set yrange [0:*]
set key top left
plot "%(sdat)s" index 0 using 1:2 with linespoints title "plain reverse_proxy (2.2 MB out)", "%(sdat)s" index 1 using 1:2 with linespoints title "gateway (6.2 MB out)", "%(sdat)s" index 2 using 1:2 with linespoints title "nginx sub_filter (2.2 MB out)"
""" % dict(size_png=size_png, dat=dat, conc_png=conc_png, sdat=sdat)
    subprocess.run(["gnuplot"], input=gp.encode(), check=True)
    lines.append("![Rewrite time and allocations against Bundle size](perf-rewrite-size.png)")
    lines.append("")
    lines.append("![Throughput against concurrency](perf-concurrency.png)")
    lines.append("")
    lines.append("| connections | " + " | ".join(str(c) for c in sorted(sweep["gateway"])) + " |")
    lines.append("| --- |" + " --- |" * len(sweep["gateway"]))
    for srv in ("plain", "gateway", "nginx"):
        lines.append("| %s req/s | " % srv + " | ".join("%.0f" % sweep[srv][c] for c in sorted(sweep[srv])) + " |")
    lines.append("")
    lines.append(END)

    path = os.path.join(out, "PERFORMANCE.md")
    text = open(path).read() if os.path.exists(path) else "# Performance\n\n"
    section = "\n".join(lines)
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
