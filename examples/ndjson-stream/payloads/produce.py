"""Emit a stream of gzip-compressed NDJSON chunks; the last chunk carries eof."""

import json
import os

with open(os.environ["MN_INPUT_FILE"]) as f:
    spec = json.load(f)
chunks, rows = int(spec["chunks"]), int(spec["rows_per_chunk"])
messages = []
for seq in range(chunks):
    records = [{"sensor": f"s{(seq * rows + i) % 7}", "value": seq * rows + i} for i in range(rows)]
    messages.append(
        {
            "type": "readings_chunk",
            "body": records,
            "content_type": "application/x-ndjson",
            "content_encoding": "gzip",
            "class": "stream",
            "stream": {"stream_id": "readings", "seq": seq, "open": seq == 0, "close": seq == chunks - 1, "eof": seq == chunks - 1},
        }
    )
print(json.dumps({"emit_messages": messages}))
