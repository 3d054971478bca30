#!/usr/bin/python3
"""Compares two model fixture files (the CLFX layout written by gen_model_fixtures.py).

Usage: /usr/bin/python3 tests/torch/cmp_fixtures.py EXPECTED ACTUAL

Structure must match exactly: the same records in the same order, with the same names, types
and element counts; integer ('i') and text ('s') records must be equal.  Floating-point values
may differ in their last bits, because a float64 loss or gradient computed on another CPU (other
SIMD widths, another BLAS summation order) lands a few ulp away; a byte-for-byte comparison would
fail on every machine but the one that wrote the fixtures.  The tolerance is a float64 one:

    |a - b| <= REL * (max(|a|, |b|) + scale)        scale = largest |value| in the record / 1000

with REL = 1e-12 for 'd' (float64) records, and for 'f' records (float64 results rounded to
float32) one float32 rounding step more: a float64 that moved by an ulp can round to the
neighbouring float32.  The scale term keeps entries near zero, whose float64 value is the
difference of large partial sums, from failing on absolute errors that are ulps of the sums.
NaN must face NaN, infinities must be equal.

Exits 0 when the files agree; otherwise prints every disagreeing record (name, first index,
both values, the difference and the tolerance) and exits 1.
"""
import math
import struct
import sys

REL_D = 1e-12
REL_F = 2.0 ** -23 + REL_D   # one float32 rounding step (half an ulp each side) plus float64 noise
SIZES = {"f": 4, "d": 8, "i": 4, "s": 1}


def read(path):
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:4] != b"CLFX":
        sys.exit(f"{path}: not a CLFX fixture file (magic {buf[:4]!r})")
    version, count = struct.unpack_from("<II", buf, 4)
    off, recs = 12, []
    for r in range(count):
        try:
            (nlen,) = struct.unpack_from("<H", buf, off)
            name = buf[off + 2:off + 2 + nlen].decode()
            off += 2 + nlen
            kind = chr(buf[off])
            (n,) = struct.unpack_from("<I", buf, off + 1)
            off += 5
            size = SIZES[kind] * n
            if off + size > len(buf):
                raise ValueError("record runs past the end of the file")
            payload = buf[off:off + size]
            off += size
        except (struct.error, KeyError, ValueError, UnicodeDecodeError, IndexError) as exc:
            sys.exit(f"{path}: record {r}: malformed ({exc})")
        vals = payload.decode() if kind == "s" else list(struct.unpack("<%d%s" % (n, kind), payload))
        recs.append((name, kind, n, vals))
    if off != len(buf):
        sys.exit(f"{path}: {len(buf) - off} bytes after the last of {count} records")
    return version, recs


def close(a, b, rel, scale):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= rel * (max(abs(a), abs(b)) + scale)


def compare(exp_path, act_path):
    ev, exp = read(exp_path)
    av, act = read(act_path)
    bad = []
    if ev != av:
        bad.append(f"version: expected {ev}, got {av}")
    if [(r[0], r[1], r[2]) for r in exp] != [(r[0], r[1], r[2]) for r in act]:
        en, an = [r[:3] for r in exp], [r[:3] for r in act]
        k = next((i for i in range(min(len(en), len(an))) if en[i] != an[i]), min(len(en), len(an)))
        bad.append(f"structure differs at record {k}: expected "
                   f"{en[k] if k < len(en) else 'end of file'}, got {an[k] if k < len(an) else 'end of file'} "
                   f"({len(en)} vs {len(an)} records)")
        return bad
    worst = 0.0
    for (name, kind, n, ev_), (_, _, _, av_) in zip(exp, act):
        if kind in "is":
            if ev_ != av_:
                k = next((i for i in range(n) if ev_[i] != av_[i]), 0) if kind == "i" else None
                where = f"[{k}]: expected {ev_[k]}, got {av_[k]}" if kind == "i" else f": expected {ev_!r}, got {av_!r}"
                bad.append(f"{name} ({kind}){where}")
            continue
        rel = REL_D if kind == "d" else REL_F
        finite = [abs(x) for x in ev_ if math.isfinite(x)]
        scale = (max(finite) if finite else 0.0) / 1000
        for i, (a, b) in enumerate(zip(ev_, av_)):
            if not close(a, b, rel, scale):
                tol = rel * (max(abs(a), abs(b)) + scale)
                bad.append(f"{name} ({kind}, {n} values)[{i}]: expected {a!r}, got {b!r}, "
                           f"|diff| {abs(a - b):.3g} > tolerance {tol:.3g}")
                break
            if a != b and math.isfinite(a) and math.isfinite(b):
                worst = max(worst, abs(a - b) / (rel * (max(abs(a), abs(b)) + scale)))
    if not bad:
        print(f"{act_path}: {len(exp)} records agree with {exp_path} "
              f"(largest difference {worst:.2g} of its tolerance)")
    return bad


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    problems = compare(sys.argv[1], sys.argv[2])
    for p in problems:
        print(f"{sys.argv[2]}: {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)
