"""Output capture, redaction, beacons, structured stdout and transient markers (§7, §9, §11)."""

from __future__ import annotations

import pytest

from mncore.execution.output import (
    TRANSIENT_MARKERS,
    Redactor,
    StreamCapture,
    exit_code_from_returncode,
    is_transient,
    parse_beacon,
    parse_structured,
)

PREFIX = b"__MN_AGENT_BEACON__"


def _capture(chunks: list[bytes], cap: int = 1 << 20) -> tuple[StreamCapture, list[str]]:
    beacons: list[str] = []
    capture = StreamCapture(cap, PREFIX, beacons.append)
    for chunk in chunks:
        capture.feed(chunk)
    capture.close()
    return capture, beacons


def test_cap_drops_the_excess_and_appends_the_marker() -> None:
    capture = StreamCapture(10)
    capture.feed(b"0123456")
    capture.feed(b"789abcdef\n")
    assert capture.truncated and capture.omitted == 7
    assert capture.text() == "0123456789\n[mn: output truncated, 7 bytes omitted]\n"
    whole = StreamCapture(10)
    whole.feed(b"0123456789")
    assert not whole.truncated and whole.text() == "0123456789"


def test_beacon_lines_are_removed_and_reported() -> None:
    data = (
        b'a\n__MN_AGENT_BEACON__{"status":"working","progress":0.5}\n'
        b"b __MN_AGENT_BEACON__ no\n__MN_AGENT_BEACON__ hi\nc"
    )
    capture, beacons = _capture([data])
    assert capture.text() == "a\nb __MN_AGENT_BEACON__ no\nc"
    assert beacons == ['{"status":"working","progress":0.5}', " hi"]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 19, 20, 64])
def test_beacons_split_across_chunks(size: int) -> None:
    data = b"x" * 30 + b"\n__MN_AGENT_BEACON__one\n__MN_AGENT_BEAC\nline\n__MN_AGENT_BEACON__two"
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    capture, beacons = _capture(chunks)
    assert capture.text() == "x" * 30 + "\n__MN_AGENT_BEAC\nline\n"
    assert beacons == ["one", "two"]


def test_beacon_bytes_do_not_count_against_the_cap() -> None:
    capture, beacons = _capture([b"__MN_AGENT_BEACON__" + b"z" * 50 + b"\nok\n"], cap=5)
    assert capture.text() == "ok\n" and not capture.truncated and len(beacons) == 1


def test_parse_beacon() -> None:
    assert parse_beacon('{"status": "working", "sequence": 2}') == {"status": "working", "sequence": 2}
    assert parse_beacon(" still going ") == {"message": "still going"}
    assert parse_beacon("[1, 2]") == {"message": "[1, 2]"}
    assert parse_beacon("{broken") == {"message": "{broken"}


def test_redaction_by_variable_name() -> None:
    redact = Redactor(
        {"API_TOKEN": "tok-123456", "my_secret": "hunter22", "SSH_KEY": "short", "Cookie": "c" * 8,
         "DB_PASSWORD": "pw-abcdef", "PLAIN": "visible-value"}
    )  # fmt: skip
    text = "tok-123456 hunter22 short cccccccc pw-abcdef visible-value"
    assert redact(text) == "[REDACTED] [REDACTED] short [REDACTED] [REDACTED] visible-value"
    assert not Redactor({"PATH": "/usr/bin"})
    assert Redactor({"PATH": "/usr/bin"})("x /usr/bin") == "x /usr/bin"


def test_longer_secret_wins_over_its_prefix() -> None:
    redact = Redactor({"A_TOKEN": "abcdef", "B_TOKEN": "abcdefghij"})
    assert redact("abcdefghij abcdef") == "[REDACTED] [REDACTED]"


@pytest.mark.parametrize("key", ["emit_messages", "events", "next_state", "complete_job", "complete_job?",
                                 "complete_step", "complete_run"])  # fmt: skip
def test_structured_keys(key: str) -> None:
    assert parse_structured(f'  {{"{key}": null}}\n') == {key: None}


@pytest.mark.parametrize(
    "stdout",
    ['{"result": 1}', "plain text", "[1, 2]", 'log line\n{"events": []}', '{"events": []}\nextra', "", "{bad json}"],
)
def test_unstructured_stdout_is_not_an_error(stdout: str) -> None:
    assert parse_structured(stdout) is None


def test_transient_markers_everywhere_case_insensitively() -> None:
    for marker in TRANSIENT_MARKERS:
        assert is_transient({"error": f"x {marker.upper()} y"}), marker
    for field in ("logs", "raw_output", "stderr", "stdout"):
        assert is_transient({"error": "command exited with status 1", field: "Connection Refused by peer"})
    assert is_transient({"error": "boom", "details": {"nested": "TLS close_notify missing"}})
    assert is_transient("agent beacon deadline exceeded")
    assert is_transient({"error": "host local command timed out"})
    assert not is_transient({"error": "command exited with status 1", "stderr": "ValueError"})
    assert not is_transient(None)


def test_exit_codes() -> None:
    assert exit_code_from_returncode(0) == 0
    assert exit_code_from_returncode(3) == 3
    assert exit_code_from_returncode(-9) == 137
    assert exit_code_from_returncode(-15) == 143
