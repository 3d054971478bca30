#!/usr/bin/env python3
"""CPU time of two cl-reward builds on the same corpora, alternating run by run (best of N each),
so that a change is compared with its base under the same load.

Usage: bleu-ab.py N BASE_BIN NEW_BIN CORPUS.jsonl...   (corpora as bench-bleu.sh writes them)
Prints, per corpus and -j 1 / -j 2, microseconds of CPU per record for each build."""
import os, resource, subprocess, sys


def cpu(prog, data, jobs):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(os.devnull, "wb") as f:
        subprocess.run([prog, "-q", "-Z", "--metric", "bleu", "-j", jobs, data], stdout=f, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


rounds, base, new = int(sys.argv[1]), sys.argv[2], sys.argv[3]
for data in sys.argv[4:]:
    records = max(1, sum(1 for _ in open(data)))
    for jobs in ("1", "2"):
        best = {"base": float("inf"), "new": float("inf")}
        for _ in range(rounds):
            for name, prog in (("base", base), ("new", new)):
                best[name] = min(best[name], cpu(prog, data, jobs))
        print("%s -j %s: base %.1f us, new %.1f us per record" % (
            os.path.basename(data), jobs, best["base"] / records * 1e6, best["new"] / records * 1e6),
            flush=True)
