#!/usr/bin/env python3
"""Writes realistic CollabLLM conversation records as JSONL to stdout.

Usage: gen-conversations.py MEGABYTES [SEED]
Each record looks like a judged branch state: id, task, prompt, a multi-turn conversation with
assistant replies of a few hundred words, scores and usage.  Deterministic for a given seed.
"""
import json
import random
import sys

WORDS = ("the a of to and in that is for it as with was on be by this are from or at an which "
         "document code function return value user assistant question answer could you please "
         "clarify what mean would like more detail about section paragraph draft revise example "
         "tone audience length summary python import def class test result error because when "
         "also however therefore first second finally great thanks sure here updated version "
         "équipe naïve café 数据 模型 — “quoted” ’s").split()


def text(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def main():
    mb = float(sys.argv[1])
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    target = int(mb * 1e6)
    out = sys.stdout
    written = 0
    i = 0
    while written < target:
        turns = rng.randint(2, 6)
        msgs = []
        for t in range(turns):
            msgs.append({"role": "user", "content": text(rng, rng.randint(10, 60))})
            msgs.append({"role": "assistant", "content": text(rng, rng.randint(40, 400))})
        rec = {
            "id": "conv-%08d" % i,
            "task": rng.choice(["document", "code", "math"]),
            "prompt": text(rng, rng.randint(30, 120)),
            "messages": msgs,
            "turn": turns,
            "done": rng.random() < 0.3,
            "scores": {"interactivity": rng.choice([0, 0.5, 1]), "bleu": rng.random(),
                       "tokens": rng.randint(100, 3000)},
            "usage": {"prompt_tokens": rng.randint(500, 9000),
                      "completion_tokens": rng.randint(50, 3000), "calls": rng.randint(1, 30)},
        }
        line = json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n"
        out.write(line)
        written += len(line.encode())
        i += 1


main()
