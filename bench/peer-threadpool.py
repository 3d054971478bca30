#!/usr/bin/env python3
"""The design of CollabLLM's official Python client, as a peer for bench-llm.sh: a pool of
worker threads (the official code nests pools of about 70), each thread blocking on one HTTP
call at a time over its own keep-alive connection, no global limit on calls in flight.
It uses http.client, lighter than the OpenAI SDK (httpx + pydantic), so its cost per call is a
lower bound for the real thing.  Prints one JSON line: calls, wall_s, cpu_s, max_rss_kb."""
import http.client
import json
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

port, calls, threads = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
local = threading.local()


def call(i):
    conn = getattr(local, "conn", None)
    if conn is None:
        conn = local.conn = http.client.HTTPConnection("127.0.0.1", port)
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": f"benchmark request {i}"}],
                       "temperature": 1, "top_p": 1, "max_tokens": 256})
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    reply = json.loads(conn.getresponse().read())
    return reply["choices"][0]["message"]["content"]


t0 = time.monotonic()
with ThreadPoolExecutor(max_workers=threads) as pool:
    done = sum(1 for _ in pool.map(call, range(calls)))
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"calls": done, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "max_rss_kb": ru.ru_maxrss}))
