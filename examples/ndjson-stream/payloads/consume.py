"""Fold gzip NDJSON chunks into a running total kept in next_state; complete on eof."""

import gzip
import json
import os

with open(os.environ["MN_MESSAGE_FILE"]) as f:
    message = json.load(f)
with open(os.environ["MN_CONTEXT_FILE"]) as f:
    state = json.load(f)["agent_state"] or {}
with open(os.environ["MN_BODY_FILE"], "rb") as f:
    raw = f.read()
if os.environ.get("MN_BODY_CONTENT_ENCODING") == "gzip":
    raw = gzip.decompress(raw)
rows = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
stream = message.get("stream") or {}
state = {
    "chunks": state.get("chunks", 0) + 1,
    "rows": state.get("rows", 0) + len(rows),
    "sum": state.get("sum", 0) + sum(r["value"] for r in rows),
    "last_seq": stream.get("seq"),
}
out = {"next_state": state, "events": [{"type": "chunk_folded", "payload": {"seq": stream.get("seq"), "rows": len(rows)}}]}
if stream.get("eof"):
    out["complete_job"] = state
print(json.dumps(out))
