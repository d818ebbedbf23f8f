"""Parses the text summary of hey (https://github.com/rakyll/hey), the load generator.

Pure functions only, so tests/bench can check them without Docker or hey installed.
"""

import re
from typing import Any

_FLOAT = r"([0-9]+(?:\.[0-9]+)?|NaN)"
_SUMMARY = {
    "total_s": re.compile(rf"^\s*Total:\s+{_FLOAT} secs", re.M),
    "slowest_s": re.compile(rf"^\s*Slowest:\s+{_FLOAT} secs", re.M),
    "fastest_s": re.compile(rf"^\s*Fastest:\s+{_FLOAT} secs", re.M),
    "average_s": re.compile(rf"^\s*Average:\s+{_FLOAT} secs", re.M),
    "reported_rps": re.compile(rf"^\s*Requests/sec:\s+{_FLOAT}", re.M),
}
_PERCENTILE = re.compile(rf"^\s*([0-9]+)% in {_FLOAT} secs", re.M)
_STATUS = re.compile(r"^\s*\[([0-9]{3})\]\s+([0-9]+) responses", re.M)
_ERROR = re.compile(r"^\s*\[([0-9]+)\]\s+(.+)$", re.M)


def _number(text: str) -> float | None:
    return None if text == "NaN" else float(text)


def parse(text: str) -> dict[str, Any]:
    """The figures of one hey run. Times stay in seconds, as hey prints them.

    hey's own Requests/sec counts failed requests too, so `ok_rps` (2xx answers per second of
    the run) is the figure to compare. hey leaves a percentile out (or prints "0% in 0.0000")
    when the run has too few answers to reach it; such percentiles are simply absent here.
    """
    result: dict[str, Any] = {}
    for key, pattern in _SUMMARY.items():
        match = pattern.search(text)
        result[key] = _number(match.group(1)) if match else None

    percentiles: dict[int, float] = {}
    for pct, value in _PERCENTILE.findall(text):
        number = _number(value)
        if int(pct) > 0 and number is not None:
            percentiles[int(pct)] = number
    result["percentiles_s"] = percentiles

    status = {int(code): int(count) for code, count in _STATUS.findall(text)}
    result["status"] = status

    errors: dict[str, int] = {}
    if "Error distribution:" in text:
        section = text.split("Error distribution:", 1)[1]
        for count, message in _ERROR.findall(section):
            errors[message.strip()] = errors.get(message.strip(), 0) + int(count)
    result["errors"] = errors

    ok = sum(count for code, count in status.items() if 200 <= code < 300)
    failed = sum(status.values()) - ok + sum(errors.values())
    result["ok"] = ok
    result["failed"] = failed
    result["requests"] = ok + failed
    total = result["total_s"]
    result["ok_rps"] = round(ok / total, 2) if total else None
    return result


def error_kind(message: str) -> str:
    """A short name for one of hey's error lines, for tables."""
    lowered = message.lower()
    for needle, kind in (
        ("client.timeout", "client timeout"),
        ("deadline exceeded", "client timeout"),
        ("connection reset", "connection reset"),
        ("connection refused", "connection refused"),
        ("too many open files", "too many open files"),
        ("eof", "EOF"),
    ):
        if needle in lowered:
            return kind
    return message[:60]
