"""Count the primes in [start, end) with a small segmented sieve; report to the collector."""

import json
import math
import os

with open(os.environ["MIRROR_NEURON_INPUT_FILE"]) as f:
    body = json.load(f)
start, end = int(body["start"]), int(body["end"])
base = [True] * (math.isqrt(end) + 1)
small = []
for n in range(2, len(base)):
    if base[n]:
        small.append(n)
        for m in range(n * n, len(base), n):
            base[m] = False
segment = bytearray([1]) * max(end - start, 0)
for p in small:
    first = max(p * p, (start + p - 1) // p * p)
    for m in range(first, end, p):
        segment[m - start] = 0
count = sum(segment[i] for i in range(len(segment)) if start + i >= 2)
agent = os.environ["MIRROR_NEURON_AGENT_ID"]
print(json.dumps({"emit_messages": [{"type": "primes_counted", "body": {"agent_id": agent, "start": start, "end": end, "count": count}}]}))
