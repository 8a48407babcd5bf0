"""Bank passwords: scrypt hashes for the config file and constant-time comparison; a mock checks a
password against a hash in a thread of its own (`verify_password_off_loop`), never on its event loop."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["hash_password", "is_password_hash", "verify_password", "verify_password_off_loop"]

_PREFIX = "scrypt"
_N, _R, _P = 2**14, 8, 1
# Threads a process gives scrypt: a campaign's stream of new wrong passwords queues behind them
# rather than starting a scrypt each (16 MiB and a core apiece); the event loop keeps the rest.
_VERIFIERS = 2
_verifiers: ThreadPoolExecutor | None = None  # made on first need, in the process that needs it


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash`, the form `password_hash` takes in the config file."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"{_PREFIX}${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def is_password_hash(value: str) -> bool:
    parts = value.split("$")
    if len(parts) != 6 or parts[0] != _PREFIX:
        return False
    try:
        int(parts[1]), int(parts[2]), int(parts[3])
        base64.b64decode(parts[4], validate=True)
        base64.b64decode(parts[5], validate=True)
    except ValueError:
        return False
    return True


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether `password` matches a hash made by `hash_password`, compared in constant time."""
    _, n, r, p, salt, expected = stored_hash.split("$")
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=base64.b64decode(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=len(base64.b64decode(expected)),
        maxmem=2**26,
    )
    return hmac.compare_digest(digest, base64.b64decode(expected))


def _yield_to_the_loop() -> None:
    """Lowers this thread's priority (Linux keeps one per thread): on a busy machine the event loop,
    which answers every call, gets the cores before a check of a password does."""
    # Not Linux, or not allowed: the checks run at the loop's priority.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


async def verify_password_off_loop(stored_hash: str, password: str) -> bool:
    """`verify_password` in this process's small pool of threads (hashlib.scrypt lets go of the GIL),
    so that the event loop goes on answering while it runs."""
    global _verifiers
    if _verifiers is None:
        _verifiers = ThreadPoolExecutor(
            max_workers=_VERIFIERS, thread_name_prefix="mpesa-atm-scrypt", initializer=_yield_to_the_loop
        )
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_verifiers, verify_password, stored_hash, password)
