#!/usr/bin/env python3
"""schema-fuzz: type confusion over the record shapes of cl-records(5).

For every tool mode and every documented field (and the first element of every documented
array), the field of a valid record is replaced by null, a number, a string, an empty and a
huge array, an object, a string with invalid UTF-8 and a 10 MB string, or removed; the tool runs
on that one record.  Each run must end in one of:

  - exit 65 naming "FILE:1: PATH" (the value does not have the field's documented kind, or a
    required field is missing) or "FILE:1: byte N" (invalid UTF-8);
  - exit 0 or 1 when the value has a documented kind (1: the record failed and said so on
    stderr with "FILE:1:");

never a signal, a sanitizer report, a hang or another status.  The expected kinds below are
the test's own reading of cl-records(5) (not the code's table), and the script checks that
every field it names is documented there.

  schema-fuzz.py --bin DIR --mock PATH [--sample N] [--budget S] [--seed N] [--jobs N]

--bin: the cl-* programs (build-san/bin for ASan+UBSan); --mock: the mockllm binary, started
here for the tools that call models.  --sample N runs N cases drawn with --seed (default:
all); --budget S stops starting cases after S seconds (the cases not run are reported).
Prints one line per failure and a summary; exits 1 when any case failed."""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# Kinds: s string, n number, b boolean, z null, o object, a array.
MSG = {"role": ("s", True), "content": ("s", True), "usage": ("o", False)}
MESSAGES = ("a", MSG)
FUTURE = {"messages": MESSAGES, "terminated": "b", "scores": "o", "R": "n", "extracted": "o",
          "judge": "o"}
CANDIDATE = {"id": "s", "content": "s", "source": "s", "mode": "s", "usage": "o",
             "futures": ("a", FUTURE), "mr": "o", "scores": "o"}
STATE = {"id": "sn", "task": "s", "task_desc": "s", "prompt": "s", "completion": "so",
         "metadata": "oz", "split": "s", "single_turn_prompt": "s",
         "single_turn_completion": "so", "single_turn_metadata": "oz", "messages": MESSAGES,
         "turn": "n", "done": "b", "done_reason": "s", "candidates": ("a", CANDIDATE),
         "scores": "o", "extracted": "o", "judge": "o", "judge_usage": "o", "picks": ("a", "o"),
         "usage": "o"}
ROW = {"prompt": (MESSAGES, True), "completion": ("s", True), "conv_id": "sn", "turn_id": "n",
       "score": "n", "sessions": ("a", MESSAGES), "rewards": "oz", "single_turn_prompt": "s",
       "single_turn_completion": "so", "single_turn_metadata": "oz", "state": "o",
       "candidate": ("o", CANDIDATE)}


def spec_parts(spec):
    """(kinds, fields of an object or None, element spec of an array or None, required)."""
    required = False
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], bool):
        spec, required = spec
    if isinstance(spec, dict):
        return "o", spec, None, required
    if isinstance(spec, tuple):
        kinds, inner = spec
        if kinds == "a":
            return "a", None, inner, required
        return kinds, inner, None, required
    return spec, None, None, required


def paths(spec, base, at=()):
    """Every (path, spec) of the documented fields present in base, elements [0] included."""
    kinds, fields, elem, _ = spec_parts(spec)
    out = []
    if fields is not None and isinstance(base, dict):
        for k, sub in fields.items():
            if k in base:
                out.append((at + (k,), sub))
                out += paths(sub, base[k], at + (k,))
            elif spec_parts(sub)[3]:
                out.append((at + (k,), sub))
    if elem is not None and isinstance(base, list) and base:
        out.append((at + (0,), elem))
        out += paths(elem, base[0], at + (0,))
    return out


def path_text(p):
    s = ""
    for k in p:
        s += "[%d]" % k if isinstance(k, int) else ("." if s else "") + k
    return s


def kind_of(v):
    if v is None:
        return "z"
    if isinstance(v, bool):
        return "b"
    if isinstance(v, (int, float)):
        return "n"
    if isinstance(v, str):
        return "s"
    if isinstance(v, list):
        return "a"
    return "o"


BAD_UTF8 = "\x00BADUTF8\x00"  # replaced by raw invalid bytes once the record is serialised
MUTATIONS = [
    ("null", None), ("number", 7), ("string", "x"), ("empty-array", []),
    ("huge-array", [0] * 100000), ("object", {"k": 1}), ("invalid-utf8", BAD_UTF8),
    ("10MB-string", "a" * (10 << 20)), ("missing", KeyError),
]


def fits(spec, v):
    """Whether v has the documented shape of spec (elements and members included)."""
    kinds, fields, elem, _ = spec_parts(spec)
    k = kind_of(v)
    if k not in kinds:
        return False
    if k == "o" and fields is not None:
        for f, sub in fields.items():
            if f in v and not fits(sub, v[f]):
                return False
            if f not in v and spec_parts(sub)[3]:
                return False
    if k == "a" and elem is not None:
        return all(fits(elem, x) for x in v[:3])
    return True


def mutate(base, p, value):
    rec = json.loads(json.dumps(base))
    node = rec
    for k in p[:-1]:
        node = node[k]
    if value is KeyError:
        if isinstance(p[-1], int):
            del node[p[-1]]
        else:
            node.pop(p[-1], None)
    else:
        node[p[-1]] = value
    text = json.dumps(rec, ensure_ascii=False)
    data = text.encode("utf-8")
    return data.replace(json.dumps(BAD_UTF8)[1:-1].encode(), b"caf\xe9 \xff\xfe")


def documented_fields():
    """Field names cl-records(5) quotes in its record sections."""
    text = open(os.path.join(ROOT, "man", "cl-records.5"), encoding="utf-8").read()
    body = text[text.index(".Ss seed"):text.index(".Ss usage")]
    return set(re.findall(r"D[qo] ([A-Za-z_]+)", body))


def all_fields(spec, acc):
    kinds, fields, elem, _ = spec_parts(spec)
    for k, sub in (fields or {}).items():
        acc.add(k)
        all_fields(sub, acc)
    if elem is not None:
        all_fields(elem, acc)
    return acc


def load_bases():
    state = json.load(open(os.path.join(HERE, "schema-base.json"), encoding="utf-8"))
    row = json.loads(open(os.path.join(ROOT, "tests", "fixtures", "pairs", "flat-rows.jsonl"),
                          encoding="utf-8").readline())
    row["state"] = {"id": "conv-0", "split": "train"}
    row["candidate"] = {"id": "c0", "source": "openai:a", "mode": "vanilla",
                        "futures": [{"terminated": False}, {"terminated": True}]}
    return state, row


def modes(mock_url):
    # Not -q: a record that fails must say so on stderr (in:1: ...), which the check reads.
    llm = ["-Z", "--no-cache", "--retries", "0", "--api-base", mock_url]
    roll = llm + ["--assistant", "openai:a", "--user", "openai:u", "--assistant-mode", "vanilla"]
    judge = llm + ["--judge", "openai:j"]
    plain = ["-Z"]
    return [
        ("cl-rollout --full", ["cl-rollout", "--full", "--max-turns", "2"] + roll, "state"),
        ("cl-rollout --branch", ["cl-rollout", "--branch", "-k", "2", "--samples", "1",
                                 "--window", "1", "--max-turns", "3"] + roll, "state"),
        ("cl-judge --interactivity", ["cl-judge", "--interactivity"] + judge, "state"),
        ("cl-judge --extract answer --accuracy", ["cl-judge", "--extract", "answer", "--accuracy"]
         + judge, "state"),
        ("cl-judge --report", ["cl-judge", "--report"] + plain, "state"),
        ("cl-reward --metric tokens", ["cl-reward", "--metric", "tokens", "--tokens", "words"]
         + plain, "state"),
        ("cl-reward --metric bleu,math", ["cl-reward", "--metric", "bleu,math"] + plain, "state"),
        ("cl-reward --reward verl", ["cl-reward", "--reward", "verl", "--tokens", "words",
                                     "--metric", "bleu"] + plain, "state"),
        ("cl-reward --reward v2", ["cl-reward", "--reward", "v2", "--tokens", "words"] + plain,
         "state"),
        ("cl-pairs --dpo", ["cl-pairs", "--dpo", "--min-gap", "0"] + plain, "state"),
        ("cl-pairs --sft", ["cl-pairs", "--sft"] + plain, "state"),
        ("cl-pairs --advance", ["cl-pairs", "--advance"] + plain, "state"),
        ("cl-pairs --to-flat", ["cl-pairs", "--to-flat"] + plain, "state"),
        ("cl-pairs --from-flat", ["cl-pairs", "--from-flat"] + plain, "row"),
    ]


SANITIZER = re.compile(rb"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:")


def run_case(bindir, work, n, mode, argv, spec, p, mname, value, data, timeout):
    d = os.path.join(work, "c%d" % n)
    os.makedirs(d)
    with open(os.path.join(d, "in"), "wb") as f:
        f.write(data)
    cmd = [os.path.join(os.path.abspath(bindir), argv[0])] + argv[1:] + ["in"]
    where = "%s: %s = %s" % (mode, path_text(p), mname)
    try:
        r = subprocess.run(cmd, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return "%s: no end within %d s" % (where, timeout)
    err = r.stderr
    rc = r.returncode
    if rc < 0 or rc >= 128:
        return "%s: killed by a signal (status %d): %s" % (where, rc, err[-300:])
    if SANITIZER.search(err):
        return "%s: sanitizer report: %s" % (where, err[:400])
    text = path_text(p)
    if value is BAD_UTF8:
        ok = rc == 65 and re.search(rb"in:1: byte [0-9]+: ", err)
        want = "exit 65 naming in:1: byte N"
    elif value is KeyError:
        required = spec_parts(spec)[3]
        ok = (rc == 65 and ("in:1: %s: missing" % text).encode() in err) if required \
            else rc in (0, 1) and (rc == 0 or b"in:1:" in err)
        want = "exit 65 naming in:1: %s: missing" % text if required else "exit 0 or 1"
    elif fits(spec, value):
        ok = rc in (0, 1) and (rc == 0 or b"in:1:" in err)
        want = "exit 0, or 1 naming in:1:"
    else:
        ok = rc == 65 and ("in:1: %s" % text).encode() in err
        want = "exit 65 naming in:1: %s" % text
    if not ok:
        return "%s: exit %d, want %s; stderr: %s" % (where, rc, want, err[:300])
    shutil.rmtree(d)  # inputs are up to 10 MB each: thousands of them would fill the disk
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--mock", required=True)
    ap.add_argument("--sample", type=int, default=0)
    ap.add_argument("--budget", type=float, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=60)
    a = ap.parse_args()

    undocumented = sorted((all_fields(STATE, set()) | all_fields(ROW, set())) - documented_fields())
    if undocumented:
        print("schema-fuzz: fields not in cl-records(5): %s" % ", ".join(undocumented))
        return 1
    state, row = load_bases()
    bases = {"state": (STATE, state), "row": (ROW, row)}

    work = tempfile.mkdtemp(prefix="cl-schema-fuzz.")
    script = os.path.join(work, "script.jsonl")
    reply = json.dumps({"thought": "t", "response": "fine, thanks", "interactivity": 0.5,
                        "accuracy": 1, "answer": "5"})
    with open(script, "w") as f:
        f.write(json.dumps({"match": "", "reply": reply}) + "\n")
    mock = subprocess.Popen([a.mock, "--script", script], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    port = mock.stdout.readline().decode().strip()
    env_url = "http://127.0.0.1:%s/v1" % port
    os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    os.environ.pop("OPENAI_API_KEY", None)

    cases = []
    for mode, argv, which in modes(env_url):
        spec, base = bases[which]
        for p, sub in paths(spec, base):
            for mname, value in MUTATIONS:
                if value is KeyError and isinstance(p[-1], int):
                    continue  # an array without its first element is just a shorter array
                cases.append((mode, argv, sub, p, mname, value, base))
    total = len(cases)
    if a.sample and a.sample < total:
        cases = random.Random(a.seed).sample(cases, a.sample)
    t0 = time.monotonic()
    failures, ran, skipped = [], 0, 0

    def one(i_case):
        i, (mode, argv, sub, p, mname, value, base) = i_case
        if a.budget and time.monotonic() - t0 > a.budget:
            return "skip"
        return run_case(a.bin, work, i, mode, argv, sub, p, mname, value,
                        mutate(base, p, value), a.timeout)

    try:
        with ThreadPoolExecutor(max_workers=a.jobs) as ex:
            for res in ex.map(one, enumerate(cases)):
                if res == "skip":
                    skipped += 1
                    continue
                ran += 1
                if res:
                    failures.append(res)
                    print("FAIL " + res, flush=True)
    finally:
        mock.terminate()
        mock.wait()
        shutil.rmtree(work)
    print("schema-fuzz: %d cases of %d run (%d left by the %.0f s budget), %d failed, %.1f s"
          % (ran, total, skipped, a.budget, len(failures), time.monotonic() - t0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
