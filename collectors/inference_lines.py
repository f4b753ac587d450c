"""The per-line work of an inference-log ingest that needs no vault, key or database.

Parsing, checking, counting and canonicalising each line's record (`digest_chunk`) is most of
an ingest's work; for large files it runs in worker processes (collectors/line_workers.py).
This module imports nothing but the standard library, orjson and the light evidence.canonical
and evidence.errors, so a worker starts in tens of milliseconds instead of loading the whole
application.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from evidence.canonical import SAFE_INT, canonical_bytes, fast_canonical, json_error
from evidence.errors import CollectorError, InputError

CONTENT_FIELDS = frozenset({"messages", "prompt", "response"})
CHOICE_CONTENT = frozenset({"message", "text", "delta", "logprobs"})
_HIST_STEP = math.log1p(0.02)  # bucket width: values within 1% of the bucket's middle


# -- statistics ---------------------------------------------------------------------------------


@dataclass
class Histogram:
    """Log-scale buckets (2% wide): percentiles within 1% whatever the count of values."""

    buckets: Counter[int] = field(default_factory=Counter)
    count: int = 0
    zeros: int = 0
    max: float = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        if value > self.max:
            self.max = value
        if value <= 0.001:
            self.zeros += 1
        else:
            self.buckets[math.floor(math.log(value) / _HIST_STEP)] += 1

    def merge(self, other: Histogram) -> None:
        self.buckets.update(other.buckets)
        self.count += other.count
        self.zeros += other.zeros
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> float | None:
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = self.zeros
        if seen >= rank:
            return 0.0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= rank:
                middle = math.exp((bucket + 0.5) * _HIST_STEP)
                return round(min(middle, self.max), 3)
        return self.max


@dataclass
class Stats:
    requests: int = 0
    errors: int = 0
    refusals: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first: float = math.inf
    last: float = -math.inf
    latency: Histogram = field(default_factory=Histogram)
    models: Counter[str] = field(default_factory=Counter)
    fingerprints: Counter[str] = field(default_factory=Counter)
    callers: Counter[str] = field(default_factory=Counter)
    unattributed: int = 0

    def merge(self, other: Stats) -> None:
        """Adds a chunk's counts (callers stay by caller id until the batch is written)."""
        for name in ("requests", "errors", "refusals", "prompt_tokens", "completion_tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.first = min(self.first, other.first)
        self.last = max(self.last, other.last)
        self.latency.merge(other.latency)
        self.models.update(other.models)
        self.fingerprints.update(other.fingerprints)
        self.callers.update(other.callers)
        self.unattributed += other.unattributed


class LineDecoder:
    """json.loads for one line, reading numbers as RFC 8785 means them.

    Floats are where Python and RFC 8785 (ECMAScript) differ: an integral float is read as the
    int it equals (RFC 8785 writes 243.0 as 243, so `"prompt_tokens": 1.0` is an integer), and
    a number past the double range is refused, as are NaN and Infinity, which Python's json
    accepts and RFC 8259 does not.
    """

    def __init__(self) -> None:
        self._decoder = json.JSONDecoder(parse_float=self._float, parse_constant=_no_constant)
        # what decode() calls after skipping whitespace: the C scanner, at an index
        self._scan: Callable[[str, int], tuple[Any, int]]
        self._scan = self._decoder.scan_once  # type: ignore[attr-defined]

    @staticmethod
    def _float(token: str) -> float | int:
        value = float(token)
        if math.isinf(value):
            raise _NotJsonNumber(f"the number {token[:40]} is out of range for a double")
        return int(value) if value.is_integer() and abs(value) <= SAFE_INT else value

    def parse(self, raw: bytes, where: Path, number: int) -> dict[str, Any]:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(where, number, f"not UTF-8 ({exc.reason})") from None
        # decode() without its two whitespace matches, for a value that ends the line; anything
        # else (leading or trailing space, an error) goes through decode() and its messages.
        try:
            try:
                obj, end = self._scan(text, 0)
            except (StopIteration, ValueError):
                end = -1
            if end != len(text) and (end != len(text) - 1 or text[end] != "\n"):
                try:
                    obj = self._decoder.decode(text)
                except ValueError as exc:  # a JSONDecodeError, or a number past the digit limit
                    raise _fail(where, number, f"not valid JSON: {json_error(exc)}") from None
        except _NotJsonNumber as exc:
            raise _fail(where, number, f"not valid JSON: {exc}") from None
        except RecursionError:
            raise _fail(where, number, "nested too deeply") from None
        if not isinstance(obj, dict):
            raise _fail(where, number, "not a JSON object")
        if b"\\u" in raw:  # only an escape can make a lone surrogate, which is no text
            try:
                json.dumps(obj, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                why = "holds an unpaired surrogate (\\ud800-\\udfff): not text"
                raise _fail(where, number, why) from None
        return obj


class _NotJsonNumber(Exception):
    """NaN, Infinity or a number past the double range: Python's json accepts them, RFC 8259
    and RFC 8785 do not, so a leaf could not be canonical."""


def _no_constant(token: str) -> float:
    raise _NotJsonNumber(f"{token} is not a JSON number")


_DIGITS_TO_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_SIXTEEN_DIGITS = b"0" * 16


def _fail(where: Path, number: int, message: str) -> CollectorError:
    return CollectorError(f"{where} line {number}: {message}")


# The values checked below come from the JSON decoder, whose only types are dict, list, str,
# int, float, bool and None (no subclasses): there `type(v) is int` is `isinstance(v, int) and
# not isinstance(v, bool)`, and `type(v) is str` is `isinstance(v, str)`.


def _check(obj: dict[str, Any], where: Path, number: int, stats: Stats) -> str | None:
    """Checks the required fields, counts the line; returns the caller id (or None)."""
    get = obj.get
    stamp = get("timestamp")
    if type(stamp) is str:
        try:
            when = datetime.fromisoformat(stamp)
        except ValueError:
            raise _fail(where, number, f"timestamp {stamp!r} is not RFC 3339") from None
        if when.tzinfo is None:
            raise _fail(where, number, f"timestamp {stamp!r} has no UTC offset")
        moment = when.timestamp()
    else:
        moment = _created(obj, where, number)
    if not _EARLIEST <= moment <= _LATEST:
        raise _fail(where, number, "its time lies outside the years 1 to 9999 (UTC)")
    if moment < stats.first:
        stats.first = moment
    if moment > stats.last:
        stats.last = moment
    ident = get("request_id", get("id"))
    kind = type(ident)
    if not ((kind is str and ident) or kind is int):
        raise _fail(where, number, "missing required field request_id (or id)")
    model = get("model")
    if type(model) is not str or not model:
        raise _fail(where, number, "missing required field model (a string)")
    stats.requests += 1
    stats.models[model] += 1
    fingerprint = get("system_fingerprint")
    if type(fingerprint) is str:
        stats.fingerprints[fingerprint] += 1
    _outcome(obj, where, number, stats)
    usage = get("usage")
    if usage is not None:
        _usage(usage, where, number, stats)
    latency = get("latency_ms")
    if latency is not None:
        kind = type(latency)
        if (kind is not float and kind is not int) or latency < 0:
            raise _fail(where, number, "latency_ms must be a number >= 0")
        stats.latency.add(latency)
    caller = get("user")
    if caller is not None and type(caller) is not str:
        raise _fail(where, number, "user must be a string (the caller id)")
    return caller or None


# The times a line may carry, as epoch seconds: what Python's datetime holds, in UTC.
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC).timestamp()
_LATEST = datetime(9999, 12, 30, tzinfo=UTC).timestamp()


def _created(obj: dict[str, Any], where: Path, number: int) -> float:
    created = obj.get("created")
    if type(created) is int and not _EARLIEST <= created <= _LATEST:
        return _LATEST + 1  # past float's range, even: refused by the caller, naming the line
    if type(created) is int or type(created) is float:
        return float(created)
    raise _fail(where, number, "missing required field timestamp (RFC 3339) or created (epoch)")


_ERROR_WORDS = frozenset({"error", "failed"})
_REFUSAL_WORDS = frozenset({"refused", "content_filter"})


def _outcome(obj: dict[str, Any], where: Path, number: int, stats: Stats) -> None:
    status = obj.get("status")
    kind = type(status)
    if status is not None and kind is not int and kind is not str:
        raise _fail(where, number, "status must be an HTTP status code or a string")
    refused = status == 451 or status in _REFUSAL_WORDS
    for choice in obj.get("choices") or ():
        if type(choice) is dict:
            message = choice.get("message")
            if choice.get("finish_reason") == "content_filter" or (
                type(message) is dict and message.get("refusal")
            ):
                refused = True
    if refused:
        stats.refusals += 1
    elif (
        (type(status) is int and status >= 400)
        or status in _ERROR_WORDS
        or obj.get("error") is not None
    ):
        stats.errors += 1


def _usage(usage: Any, where: Path, number: int, stats: Stats) -> None:
    if type(usage) is not dict:
        raise _fail(where, number, "usage must be an object")
    value = usage.get("prompt_tokens")
    if value is not None:
        if type(value) is not int or value < 0:
            raise _fail(where, number, "usage.prompt_tokens must be an integer >= 0")
        stats.prompt_tokens += value
    value = usage.get("completion_tokens")
    if value is not None:
        if type(value) is not int or value < 0:
            raise _fail(where, number, "usage.completion_tokens must be an integer >= 0")
        stats.completion_tokens += value


# -- the per-line work that needs no vault: runs in worker processes for large files ----------

# (line number, caller id or None, the record's canonical bytes, whether it has content)
Digested = tuple[int, str | None, bytes, bool]


def _fast_parse(raw: bytes) -> dict[str, Any] | None:
    """The line's object by orjson, or None where the exact way must read it.

    orjson reads JSON as `json` does wherever this lets it (no run of 16 digits, so no integer
    past 2**53; valid UTF-8 without lone surrogates; the last of repeated keys wins), in a third
    of the time; `fast_canonical` then writes the record (it came from a parser: no read-back).
    """
    if _SIXTEEN_DIGITS in raw.translate(_DIGITS_TO_ZERO):
        return None
    try:
        obj = orjson.loads(raw)
    except ValueError:  # orjson.JSONDecodeError: the exact way names the error
        return None
    return obj if type(obj) is dict else None


def digest_chunk(
    where: Path, first: int, lines: list[bytes], *, fast: bool = True
) -> tuple[Stats, list[Digested]]:
    """Parses and checks lines `first`, `first + 1`, ...; counts them (callers by caller id).

    Each line's object is checked whole, then made into its record in place (`split_line`
    without the copies: the object is this function's own). `fast=False` takes the exact way
    for every line (tests hold the two equal). A line the fast way refuses sends the whole chunk
    the exact way, whose verdict stands: orjson reads 1.0 as a float where the exact way reads
    the integer RFC 8785 makes of it, so `"prompt_tokens": 1.0` passes only there.
    """
    if not fast:
        return _digest(where, first, lines, fast=False)
    try:
        return _digest(where, first, lines, fast=True)
    except CollectorError:
        return _digest(where, first, lines, fast=False)


def _digest(
    where: Path, first: int, lines: list[bytes], *, fast: bool
) -> tuple[Stats, list[Digested]]:
    decoder = LineDecoder()
    parse = decoder.parse
    stats = Stats()
    callers = stats.callers
    out: list[Digested] = []
    append = out.append
    for number, raw in enumerate(lines, start=first):
        if raw.isspace():
            continue
        parsed = _fast_parse(raw) if fast else None
        obj = parse(raw, where, number) if parsed is None else parsed
        caller = _check(obj, where, number, stats)
        if caller is None:
            stats.unattributed += 1
        else:
            callers[caller] += 1
        has_content = _strip(obj)
        data = None if parsed is None else fast_canonical(obj) or _integral_bytes(obj)
        if data is None:
            if parsed is not None:  # read again the exact way: 245.0 is the integer 245 there
                obj = parse(raw, where, number)
                _strip(obj)
            data = _exact_bytes(obj, where, number)
        append((number, caller, data, has_content))
    return stats, out


def _integers(value: Any) -> Any:
    """The value with each integral float within 2**53 made the integer RFC 8785 writes (as the
    exact way reads it: 245.0 is 245); orjson keeps the ".0"."""
    kind = type(value)
    if kind is float:
        return int(value) if value.is_integer() and abs(value) <= SAFE_INT else value
    if kind is dict:
        return {k: _integers(v) for k, v in value.items()}
    if kind is list:
        return [_integers(v) for v in value]
    return value


def _integral_bytes(record: dict[str, Any]) -> bytes | None:
    """`fast_canonical` of the record with its integral floats made integers, or None."""
    try:
        return fast_canonical(_integers(record))
    except RecursionError:
        return None


def _strip(obj: dict[str, Any]) -> bool:
    """Makes the line's object its record, in place (`split_line` without the copies): without
    `user` and content. Whether it had content."""
    obj.pop("user", None)
    has_content = False
    for name in CONTENT_FIELDS:
        if name in obj:
            del obj[name]
            has_content = True
    choices = obj.get("choices")
    if type(choices) is list and choices:
        has_content = True
        obj["choices"] = [
            {k: v for k, v in c.items() if k not in CHOICE_CONTENT} if type(c) is dict else c
            for c in choices
        ]
    return has_content


def _exact_bytes(record: dict[str, Any], where: Path, number: int) -> bytes:
    """RFC 8785 bytes of a record `LineDecoder` read."""
    try:
        return canonical_bytes(record)
    except InputError as exc:  # an integer beyond 2**53: RFC 8785 has no bytes for it
        raise _fail(where, number, str(exc)) from None
