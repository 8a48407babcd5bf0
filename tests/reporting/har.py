"""HAR 1.2's required keys (the specification's "required" fields of each object), to check a
recording the way a HAR viewer reads it."""

from __future__ import annotations

from typing import Any

__all__ = ["assert_har_1_2"]

_LOG = ("version", "creator", "entries")
_CREATOR = ("name", "version")
_ENTRY = ("startedDateTime", "time", "request", "response", "cache", "timings")
_REQUEST = ("method", "url", "httpVersion", "cookies", "headers", "queryString", "headersSize", "bodySize")
_RESPONSE = (
    "status",
    "statusText",
    "httpVersion",
    "cookies",
    "headers",
    "content",
    "redirectURL",
    "headersSize",
    "bodySize",
)
_CONTENT = ("size", "mimeType")
_TIMINGS = ("send", "wait", "receive")
_NAME_VALUE = ("name", "value")


def _has(obj: Any, keys: tuple[str, ...], where: str) -> None:
    assert isinstance(obj, dict), f"{where} is not an object"
    missing = [key for key in keys if key not in obj]
    assert not missing, f"{where} lacks {missing}"


def assert_har_1_2(document: Any) -> None:
    _has(document, ("log",), "the document")
    log = document["log"]
    _has(log, _LOG, "log")
    assert log["version"] == "1.2"
    _has(log["creator"], _CREATOR, "log.creator")
    assert isinstance(log["entries"], list)
    for index, entry in enumerate(log["entries"]):
        where = f"entries[{index}]"
        _has(entry, _ENTRY, where)
        assert isinstance(entry["time"], (int, float)) and entry["time"] >= 0
        _has(entry["request"], _REQUEST, f"{where}.request")
        _has(entry["response"], _RESPONSE, f"{where}.response")
        _has(entry["response"]["content"], _CONTENT, f"{where}.response.content")
        _has(entry["timings"], _TIMINGS, f"{where}.timings")
        for part in ("request", "response"):
            for header in entry[part]["headers"]:
                _has(header, _NAME_VALUE, f"{where}.{part}.headers[]")
        if "postData" in entry["request"]:
            _has(entry["request"]["postData"], ("mimeType",), f"{where}.request.postData")
        # ISO 8601 with a time zone, as the specification asks
        started = entry["startedDateTime"]
        assert "T" in started and (started.endswith("Z") or started[-6] in "+-"), started
