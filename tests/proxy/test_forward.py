"""The way to the upstream: which headers pass, and the body the checks read."""

from __future__ import annotations

import gzip
import zlib

from mpesa_atm.proxy.forward import decoded, end_to_end


def test_hop_by_hop_headers_and_those_connection_names_are_dropped() -> None:
    headers = [
        ("Content-Type", "application/json"),
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "1"),
        ("Transfer-Encoding", "chunked"),
        ("Host", "proxy.test"),
        ("Content-Length", "12"),
        ("X-Api-Key", "k"),
    ]
    assert end_to_end(headers) == [("Content-Type", "application/json"), ("X-Api-Key", "k")]


def test_the_checks_read_a_compressed_answer_decoded_and_a_broken_one_as_it_came() -> None:
    body = b'{"output_ResponseCode": "0"}'
    assert decoded(gzip.compress(body), [("Content-Encoding", "gzip")]) == body
    assert decoded(zlib.compress(body), [("content-encoding", "deflate")]) == body
    assert decoded(b"not gzip", [("Content-Encoding", "gzip")]) == b"not gzip"
    assert decoded(body, []) == body
