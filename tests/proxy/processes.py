"""`mpesa-atm proxy` as a process, as a user runs it (the fixture `proxies`, in conftest.py): its output
in a file, its evidence files beside it, stopped by a signal."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.servers import wait_for

_BANNER = re.compile(r"^mpesa-atm \S+: proxy of the (?:iPG|bank) on (http://\S+) ", re.MULTILINE)


class Proxy:
    """A `mpesa-atm proxy` process, its output in a file; `args` after the defaults (a `--db` of them
    is the one it uses: two proxies on one store)."""

    def __init__(self, folder: Path, role: str, upstream: str, *args: str) -> None:
        self.folder = folder
        self.log = folder / f"proxy-{role}.log"
        self.files = {name: folder / f"{role}.{name}" for name in ("html", "har", "xml")}
        command = [
            *("-m", "mpesa_atm", "proxy", role, "--upstream", upstream, "--port", "0"),
            *("--db", str(folder / f"proxy-{role}.sqlite3")),
            *("--report", str(self.files["html"]), "--har", str(self.files["har"])),
            *("--junit-xml", str(self.files["xml"]), *args),
        ]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen([sys.executable, *command], stdout=out, stderr=subprocess.STDOUT)
        self.url = ""

    def ready(self) -> Proxy:
        def banner() -> bool:
            found = _BANNER.search(self.output())
            assert self.process.poll() is None, self.output()
            self.url = found.group(1) if found else ""
            return bool(found)

        wait_for(banner, "the proxy's banner", timeout=30)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.process.send_signal(sig)
        return self.process.wait(30)


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[Callable[..., Proxy]]:
    started: list[Proxy] = []

    def start(role: str, upstream: str, *args: str) -> Proxy:
        started.append(Proxy(tmp_path, role, upstream, *args))
        return started[-1]

    yield start
    for proxy in started:
        if proxy.process.poll() is None:
            proxy.process.kill()
            proxy.process.wait()
