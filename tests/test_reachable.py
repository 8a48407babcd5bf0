"""Waiting for a partner that is still starting: refused connections are tried again, for a while."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from mpesa_atm.reachable import wait_until_listening


def test_a_port_that_starts_listening_during_the_wait_is_reached():
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        # Bound but not listening: connections are refused until listen() below.
        timer = threading.Timer(0.4, reserved.listen)
        timer.start()
        started = time.monotonic()
        wait_until_listening(f"http://127.0.0.1:{port}", wait=5, timeout=1)
        assert 0.4 <= time.monotonic() - started < 5
        timer.join()


def test_without_a_wait_a_refusal_is_raised_at_once():
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(ConnectionRefusedError):
            wait_until_listening(f"http://127.0.0.1:{port}", wait=0, timeout=1)
        assert time.monotonic() - started < 0.5
