#!/usr/bin/env python3
"""Two cl-reward builds on the same corpora, alternating run by run, so that a change is compared
with its base under the same load: CPU time (best of N) and wall time (median of N).

Usage: bleu-ab.py N BASE_BIN NEW_BIN CORPUS.jsonl...   (corpora as bench-bleu.sh writes them)
Prints, per corpus and -j 1 / -j 2, microseconds per record for each build.  The wall figures
mean something only on an idle machine; -j 2's are the ones with default flags there.

       bleu-ab.py --kernel N BASE_TIMER NEW_TIMER CORPUS.jsonl...
The BLEU kernel alone: two builds of build/tests/bleu-timer alternating N times (-j 1, three
rounds each), the best microseconds of CPU per pair for each and both checksums, which must
agree."""
import os, resource, statistics, subprocess, sys, time


def run(prog, data, jobs):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(os.devnull, "wb") as f:
        subprocess.run([prog, "-q", "-Z", "--metric", "bleu", "-j", jobs, data], stdout=f, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall


def kernel(prog, data):
    with open(data, "rb") as f:
        pairs, _, cpu, checksum = subprocess.run([prog, "-j", "1", "-r", "3"], stdin=f, check=True,
                                                 capture_output=True, text=True).stdout.split()
    return float(cpu) / int(pairs) * 1e6, checksum


if sys.argv[1] == "--kernel":
    rounds, base, new = int(sys.argv[2]), sys.argv[3], sys.argv[4]
    for data in sys.argv[5:]:
        best = {"base": [], "new": []}
        sums = {}
        for _ in range(rounds):
            for name, prog in (("base", base), ("new", new)):
                us, sums[name] = kernel(prog, data)
                best[name].append(us)
        print("%s kernel: base %.2f us CPU, new %.2f us CPU per pair; checksums %s %s%s" % (
            os.path.basename(data), min(best["base"]), min(best["new"]), sums["base"], sums["new"],
            "" if sums["base"] == sums["new"] else " DIFFER"), flush=True)
    sys.exit(0)

rounds, base, new = int(sys.argv[1]), sys.argv[2], sys.argv[3]
for data in sys.argv[4:]:
    records = max(1, sum(1 for _ in open(data)))
    for jobs in ("1", "2"):
        cpu = {"base": [], "new": []}
        wall = {"base": [], "new": []}
        for _ in range(rounds):
            for name, prog in (("base", base), ("new", new)):
                c, w = run(prog, data, jobs)
                cpu[name].append(c)
                wall[name].append(w)
        us = lambda x: x / records * 1e6
        print("%s -j %s: base %.1f us CPU, %.1f us wall; new %.1f us CPU, %.1f us wall per record" % (
            os.path.basename(data), jobs, us(min(cpu["base"])), us(statistics.median(wall["base"])),
            us(min(cpu["new"])), us(statistics.median(wall["new"]))), flush=True)
