"""The per-line checks and record bytes of `digest_chunk`, refusal by refusal.

The big-integer check is made on the line's raw bytes (a run of 16 digits) and the type checks
by exact type: these hold that every bad value is still refused, with its message, and that a
line whose digits only look long gets the same bytes as the exact path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.inference_lines import digest_chunk
from collectors.inference_log import split_line
from evidence.errors import CollectorError

WHERE = Path("gw.jsonl")
BASE: dict[str, Any] = {"created": 1_700_000_000, "id": "r", "model": "m"}


def digest(*lines: str) -> list[tuple[int, str | None, bytes, bool]]:
    _, out = digest_chunk(WHERE, 1, [f"{line}\n".encode() for line in lines])
    return out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"created": True}, "missing required field timestamp"),
        ({"created": "1"}, "missing required field timestamp"),
        ({"timestamp": "yesterday"}, "is not RFC 3339"),
        ({"id": True}, "missing required field request_id"),
        ({"id": ""}, "missing required field request_id"),
        ({"id": 1.5}, "missing required field request_id"),
        ({"id": "r", "request_id": None}, "missing required field request_id"),
        ({"model": ""}, "missing required field model"),
        ({"model": 7}, "missing required field model"),
        ({"status": True}, "status must be an HTTP status code"),
        ({"status": 1.5}, "status must be an HTTP status code"),
        ({"status": [200]}, "status must be an HTTP status code"),
        ({"usage": []}, "usage must be an object"),
        ({"usage": {"prompt_tokens": True}}, "usage.prompt_tokens must be an integer"),
        ({"usage": {"prompt_tokens": 1.5}}, "usage.prompt_tokens must be an integer"),
        ({"usage": {"completion_tokens": -1}}, "usage.completion_tokens must be an integer"),
        ({"usage": {"completion_tokens": "9"}}, "usage.completion_tokens must be an integer"),
        ({"latency_ms": True}, "latency_ms must be a number"),
        ({"latency_ms": -0.5}, "latency_ms must be a number"),
        ({"latency_ms": "5"}, "latency_ms must be a number"),
        ({"user": False}, "user must be a string"),
        ({"v": 2**53}, "safe integer"),
        ({"v": -(2**53)}, "safe integer"),
        ({"deep": [{"v": [12345678901234567890]}]}, "safe integer"),
    ],
)
def test_a_bad_value_is_refused_by_line(extra: dict[str, Any], message: str) -> None:
    good = json.dumps(BASE)
    with pytest.raises(CollectorError, match=message) as caught:
        digest(good, json.dumps({**BASE, **extra}))
    assert str(caught.value).startswith(f"{WHERE} line 2: ")


@pytest.mark.parametrize(
    "extra",
    [
        {"v": 2**53 - 1, "w": -(2**53 - 1)},  # 16 digits, safe
        {"s": "1234567890123456789012"},  # a long run of digits in a string
        {"id": "chatcmpl-00000000000000000001", "t": 1e-7, "f": 3.0, "g": 5e22},
        {"choices": [1, {"finish_reason": "stop", "text": "x", "index": 0}], "prompt": "p"},
        {"e": "é😀", "latency_ms": 12.0, "usage": {"prompt_tokens": 1.0}},
    ],
)
def test_record_bytes_are_rfc8785_of_the_split_record(extra: dict[str, Any]) -> None:
    line = {**BASE, "user": "u", **extra}
    [(number, caller, data, has_content)] = digest(json.dumps(line))
    record, content = split_line(json.loads(json.dumps(line)))
    assert (number, caller, has_content) == (1, "u", content is not None)
    assert data == rfc8785.dumps(record)


@pytest.mark.parametrize("spaced", [" {}", "{} ", "{}\t", "{}\r"])
def test_space_around_the_object_is_allowed(spaced: str) -> None:
    line = spaced.replace("{}", json.dumps(BASE))
    assert digest(line)[0][2] == rfc8785.dumps(BASE)


@pytest.mark.parametrize(
    ("line", "message"),
    [("{} {}", "Extra data"), ("{} x", "Extra data"), ("{", "Expecting property name"), ("", "")],
)
def test_bad_json_is_refused_with_its_message(line: str, message: str) -> None:
    if not line:  # a blank line is skipped, not refused
        assert digest(line) == []
        return
    with pytest.raises(CollectorError, match=f"line 1: not valid JSON: {message}"):
        digest(line.replace("{}", json.dumps(BASE)))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('"latency_ms": NaN', "NaN is not a JSON number"),
        ('"extra": {"score": Infinity}', "Infinity is not a JSON number"),
        ('"extra": [-Infinity]', "-Infinity is not a JSON number"),
        ('"extra": 1e400', "the number 1e400 is out of range for a double"),
        (' "extra": -2E+999 ', "out of range for a double"),
    ],
)
def test_numbers_json_does_not_have_are_refused_by_line(raw: str, message: str) -> None:
    """Python's json reads NaN, Infinity and 1e400; RFC 8259 and RFC 8785 have none of them,
    so the line is refused (a leaf holding them could not be canonical)."""
    good = json.dumps(BASE)
    bad = json.dumps(BASE)[:-1] + ", " + raw + "}"
    with pytest.raises(CollectorError, match=message) as caught:
        digest(good, bad)
    assert "gw.jsonl line 2: not valid JSON" in str(caught.value)


def test_a_line_nested_too_deeply_is_refused_by_line() -> None:
    nested = json.dumps(BASE)[:-1] + ', "extra": ' + "[" * 200_000 + "]" * 200_000 + "}"
    with pytest.raises(CollectorError, match="line 1: nested too deeply"):
        digest(nested)


# -- the fast way (orjson) and the exact way agree ------------------------------------------

_numbers = st.one_of(
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.integers(min_value=-(10**20), max_value=10**20),  # past 2**53: both refuse the line
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 243.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e15, 1e16, 1e21, 5e-324]),
)
_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_values = st.recursive(
    st.none() | st.booleans() | _numbers | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


def _both_ways(lines: list[bytes]) -> tuple[object, object]:
    results = []
    for fast in (True, False):
        try:
            stats, out = digest_chunk(WHERE, 1, lines, fast=fast)
            results.append((out, stats.requests, stats.errors, stats.latency.count))
        except CollectorError as exc:
            results.append(str(exc))
    return results[0], results[1]


@settings(max_examples=400, deadline=None)
@given(
    extra=st.dictionaries(_text, _values, max_size=4),
    latency=_numbers,
    tokens=_numbers,
    status=st.one_of(_numbers, st.sampled_from(["error", "refused"])),
)
def test_the_fast_way_gives_the_exact_way_s_bytes_and_verdicts(
    extra: dict[str, Any], latency: Any, tokens: Any, status: Any
) -> None:
    line = {
        **extra,
        **BASE,
        "latency_ms": latency,
        "usage": {"prompt_tokens": tokens},
        "status": status,
        "user": "u",
        "messages": [{"role": "user", "content": "hi"}],
    }
    raw = json.dumps(line, ensure_ascii=False).encode()
    fast, exact = _both_ways([raw, b"\n", json.dumps(BASE).encode()])
    assert fast == exact
    if not isinstance(exact, str):  # accepted: the bytes are RFC 8785's of the record
        record, _ = split_line(json.loads(raw))
        assert exact[0][0][2] == rfc8785.dumps(record)


@pytest.mark.parametrize(
    "value",
    ["1.0", "-0.0", "1e2", "1E-7", "100000000000000.001", "0.000001", "1e16", "2.5e-5"],
)
def test_numbers_orjson_writes_otherwise_take_the_exact_way(value: str) -> None:
    raw = json.dumps(BASE)[:-1] + f', "usage": {{"prompt_tokens": {value}}}, "x": [{value}]}}'
    fast, exact = _both_ways([raw.encode()])
    assert fast == exact


def test_a_gateway_line_takes_the_fast_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact way is the fallback, not the rule: a usual line never reaches its parser."""
    import collectors.inference_lines as module

    def refuse(*_: object) -> None:
        raise AssertionError("the exact parser ran")

    monkeypatch.setattr(module.LineDecoder, "parse", refuse)
    line = {
        **BASE,
        "user": "alice@example.com",
        "latency_ms": 245.3,
        "usage": {"prompt_tokens": 40, "completion_tokens": 61},
        "choices": [{"index": 0, "message": {"content": "é"}, "finish_reason": "stop"}],
    }
    [(_, caller, data, has_content)] = digest(json.dumps(line))
    assert (caller, has_content) == ("alice@example.com", True)
    assert data == rfc8785.dumps(split_line(line)[0])


@pytest.mark.parametrize("depth", [100, 300, 1000, 1023])
def test_deep_records_get_the_same_verdict_both_ways(depth: int) -> None:
    """orjson writes at most 254 levels and reads 1024; past either the exact way decides."""
    raw = json.dumps(BASE)[:-1] + ', "x": ' + "[" * depth + "1.0" + "]" * depth + "}"
    fast, exact = _both_ways([raw.encode()])
    assert fast == exact
