"""Makes the README's screenshot of a report: a campaign against a bank whose references are one
character short, served on loopback, its page taken by the same headless Chromium as the tests.

    python -m tests.reporting.screenshot docs/report-screenshot.png
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

from mpesa_atm.cli import main as mpesa_atm
from mpesa_atm.settings import Settings
from tests.fuzz.partners import BROKEN
from tests.reporting.browser import screenshot


def _serve(app: object) -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))  # type: ignore[arg-type]
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def make(png: Path) -> None:
    broken = next(b for b in BROKEN if b.name == "short_reference")
    with tempfile.TemporaryDirectory() as folder:
        url = _serve(broken.app(Settings(db_path=str(Path(folder) / "bank.sqlite3"))))
        page = Path(folder) / "report.html"
        options = ["--max-examples", "40", "--seed", "7", "--report", str(page)]
        mpesa_atm(["fuzz", "bank", "--url", url, *options])
        screenshot(page, png, width=1000, height=1120)


if __name__ == "__main__":
    make(Path(sys.argv[1]))
