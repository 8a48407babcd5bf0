"""The shell blocks of README.md and docs/*.md: read from the pages (`blocks`, the `docs-test` markers,
the commands in them) and run as a reader types them (`PageRun`). tests/test_readme.py says the rules
and checks what they did."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mpesa_atm.cli import DEFAULT_PORTS, build_parser
from tests.fixtures.servers import free_port, kill_tree, port_is_free, wait_for_banners, wait_until_healthy

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md"))]
DEFAULTS = {str(DEFAULT_PORTS["ipg"]): "ipg", str(DEFAULT_PORTS["bank"]): "bank"}  # 8001, 8002
MARKER = re.compile(r"<!-- docs-test: (.*?) -->")
# curl's --write-out, from the test's config file: the HTTP status after the body.
STATUS = "\n--- HTTP "
CURLRC = 'write-out = "\\n--- HTTP %{http_code}"\n'
COMMAND_TIMEOUT = 180  # seconds; a fuzz campaign as written takes ten or so


@dataclass
class Command:
    page: str
    line: int
    text: str  # as written, continuation lines and all
    exit_code: int = 0  # as documented by the comment above it
    answer: str = ""  # the `# ...` lines after it

    @property
    def argv(self) -> list[str]:
        return words(self.text)

    @property
    def background(self) -> bool:
        return self.text.rstrip().endswith("&")

    @property
    def serves(self) -> bool:
        return self.argv[:2] == ["mpesa-atm", "serve"]

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass
class Block:
    page: str
    line: int
    text: str
    marker: str | None  # the docs-test comment right before it

    def commands(self) -> list[Command]:
        """The block's commands: shell lines joined where a quote or a backslash goes on."""
        commands: list[Command] = []
        pending: list[str] = []
        exit_code = 0
        last = 0  # the line the last command, or the answer it documents, ends on
        for number, line in enumerate(self.text.splitlines(), start=self.line + 1):
            if not pending and line.startswith("#"):
                if commands and number == last + 1:  # right under a command: its answer
                    commands[-1].answer += line.lstrip("# ") + "\n"
                    last = number
                elif (said := re.search(r"\bexit (\d+)", line)) is not None:
                    exit_code = int(said.group(1))
                continue
            if not pending and not line.strip():
                continue
            pending.append(line)
            text = "\n".join(pending)
            if line.endswith("\\") or not _complete(text):
                continue
            commands.append(Command(self.page, number - len(pending) + 1, text, exit_code))
            pending, last = [], number
        assert not pending, f"{self.page}:{self.line}: a command never ends"
        return commands

    def to_run(self) -> list[Command]:
        """What the test runs of the block: every command, none, or the marker's part."""
        if self.marker is None or self.marker.startswith("with "):
            return self.commands()
        if self.marker.startswith("not run: "):
            return []
        part = re.fullmatch(r'runs "([^"]+)"; .+', self.marker)
        assert part, f"{self.page}:{self.line}: a docs-test marker the test cannot read: {self.marker!r}"
        assert part.group(1) in self.text, f"{self.page}:{self.line}: {part.group(1)!r} is not in the block"
        return [Command(self.page, self.line + 1, part.group(1))]

    def started_first(self) -> Command | None:
        found = re.fullmatch(r'with "([^"]+)" running(, .+)?', self.marker or "")
        return Command(self.page, self.line, found.group(1)) if found else None


def words(command: str) -> list[str]:
    """A command's words as the shell splits them: continuations joined, comment and `&` dropped."""
    split = shlex.split(command.replace("\\\n", " "), comments=True)
    return split[:-1] if split[-1:] == ["&"] else split


def parsed(argv: list[str]) -> argparse.Namespace:
    """`mpesa-atm`'s reading of `argv` (its words after `mpesa-atm`); AssertionError if it refuses them."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        raise AssertionError(f"mpesa-atm refuses {shlex.join(argv)}") from None


def _complete(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:  # a quote still open: the command goes on on the next line
        return False
    return True


def blocks(page: str) -> list[Block]:
    """The page's shell blocks, and its inline `curl ...` spans as blocks of one line, in page order."""
    found: list[Block] = []
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    fence: int | None = None
    for number, line in enumerate(lines, start=1):
        if line.startswith("```"):
            if fence is None:
                fence = number
            else:
                opening = lines[fence - 1]
                if opening == "```sh":
                    marker = MARKER.fullmatch(lines[fence - 2]) if fence > 1 else None
                    body = "\n".join(lines[fence : number - 1])
                    found.append(Block(page, fence, body, marker.group(1) if marker else None))
                fence = None
        elif fence is None:
            found += [Block(page, number, span, None) for span in re.findall(r"`(curl [^`]+)`", line)]
    return found


def stray_markers(page: str) -> list[int]:
    """Lines of docs-test comments that are not right before a shell block."""
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    return [
        number
        for number, line in enumerate(lines, start=1)
        if MARKER.search(line) and (number == len(lines) or lines[number] != "```sh")
    ]


class PortTaken(Exception):
    """A serve of the page found its port taken: the page is run again on other ports."""


@dataclass
class Outcome:
    command: str  # as run: ports rewritten, placeholders filled
    code: int | None = None
    output: str = ""  # stdout, then stderr; a serve's log as it was when stopped
    status: int | None = None  # curl's HTTP status
    again: Outcome | None = None  # the same command sent a second time (SENT_TWICE)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    log: Path
    block: int  # the index of the block that started it
    outcome: Outcome


@dataclass
class PageRun:
    """One page's commands run in `folder`; `ports` maps each default port to the one used."""

    page: str
    folder: Path
    ports: dict[str, str]
    twice: str | None = None  # a command with this in it is run twice, its second outcome `again`
    outcomes: dict[int, Outcome] = field(default_factory=dict)  # by the command's line
    servers: list[Server] = field(default_factory=list)
    filled: dict[str, str] = field(default_factory=dict)  # the fields of the answers so far
    error: str | None = None  # why the page could not be run to its end

    @property
    def as_written(self) -> bool:
        return all(default == port for default, port in self.ports.items())

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MPESA_ATM_")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["CURL_HOME"] = str(self.folder)  # curl reads .curlrc there, and only that one
        env["XDG_CACHE_HOME"] = str(self.folder / "cache")  # where fuzz keeps Hypothesis's files
        return env

    def rewrite(self, text: str) -> str:
        """`text` with the page's ports; the placeholders an earlier answer filled, filled."""
        for default, port in self.ports.items():
            text = re.sub(rf"\b{default}\b", port, text)
        for name, value in self.filled.items():
            text = text.replace(f"<{name}>", value)
        return text

    def served(self, command: Command) -> str:
        """A `mpesa-atm serve` as run (its `&` is the test's): with flags for the page's ports when
        they are not the defaults and it names none."""
        text = self.rewrite(command.text.rstrip().removesuffix("&").rstrip())
        if self.as_written or {"--port", "--ipg-port", "--bank-port"} & set(command.argv):
            return text
        role = parsed(command.argv[1:]).role
        port = {role: self.ports[default] for default, role in DEFAULTS.items()}
        flags = f"--port {port[role]}" if role else f"--ipg-port {port['ipg']} --bank-port {port['bank']}"
        return re.sub(r"mpesa-atm serve( ipg| bank)?", rf"\g<0> {flags}", text, count=1)

    def run(self, blocks_of_page: list[Block]) -> None:
        (self.folder / ".curlrc").write_text(CURLRC)
        try:
            for index, block in enumerate(blocks_of_page):
                commands = block.to_run()
                first = block.started_first()
                if first is not None or any(command.serves for command in commands):
                    self.stop(before=index)
                if first is not None:
                    self.start(first, index)
                for command in commands:
                    if command.serves:
                        self.outcomes[command.line] = self.start(command, index)
                    else:
                        self.outcomes[command.line] = self.execute(command)
                    for server in self.servers:  # one started with & that ended on its own
                        if server.process.poll() is not None:
                            self.lost(server)
        finally:
            self.stop(before=len(blocks_of_page))

    def start(self, command: Command, block: int) -> Outcome:
        text = self.served(command)
        log = self.folder / f"serve-{len(self.servers)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", text],
                cwd=self.folder,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as a whole
            )
        server = Server(process, log, block, Outcome(text))
        self.servers.append(server)
        if not command.background:
            args = parsed(words(text)[1:])
            roles = (args.role,) if args.role else ("ipg", "bank")
            try:
                wait_until_healthy(wait_for_banners(roles, log, process), process)
            except RuntimeError as exc:
                if process.poll() is not None:
                    self.lost(server)
                raise RuntimeError(f"{exc}:\n{log.read_text(errors='replace')}") from None
        return server.outcome

    def lost(self, server: Server) -> None:
        """A serve that ended on its own: its port taken, or a failure the test reports."""
        log = server.log.read_text(errors="replace")
        if "cannot listen on" in log:
            raise PortTaken(log)
        raise AssertionError(f"{self.page}: mpesa-atm serve ended with {server.process.poll()}:\n{log}")

    def execute(self, command: Command) -> Outcome:
        text = self.rewrite(command.text)
        unfilled = re.findall(r"<[a-z_]+>", text)
        assert not unfilled, f"{command}: no earlier answer on the page gives {', '.join(unfilled)}"
        outcome = self.bash(text)
        if self.twice is not None and self.twice in text:
            outcome.again = self.bash(text)
        return outcome

    def bash(self, text: str) -> Outcome:
        """Runs `text` to its end, or until a serve of the page ends (its port taken: whatever
        answers there is not the page's, and may never answer)."""
        process = subprocess.Popen(
            ["bash", "-c", text],
            cwd=self.folder,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:
            try:
                stdout, stderr = process.communicate(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                lost = [server for server in self.servers if server.process.poll() is not None]
                if lost or time.monotonic() > deadline:
                    kill_tree(process.pid)
                    process.communicate()
                    if lost:
                        self.lost(lost[0])
                    raise AssertionError(f"{text}: not done after {COMMAND_TIMEOUT} s") from None
        outcome = Outcome(text, process.returncode, stdout + stderr)
        if text.startswith("curl ") and STATUS in stdout:
            body, _, status = stdout.rpartition(STATUS)
            outcome.output, outcome.status = body, int(status)
            try:
                answer = json.loads(body)
            except ValueError:
                return outcome
            if isinstance(answer, dict):
                self.filled |= {key: value for key, value in answer.items() if isinstance(value, str)}
        return outcome

    def stop(self, before: int) -> None:
        """Stops the servers started by blocks before `before`: those still running must be."""
        ended = []
        for server in [server for server in self.servers if server.block < before]:
            self.servers.remove(server)
            if server.process.poll() is not None:
                ended.append(server)  # a serve ends when it is stopped, not before
            else:
                os.killpg(server.process.pid, signal.SIGTERM)
            try:
                server.process.wait(10)
            finally:
                kill_tree(server.process.pid)
                server.outcome.output = server.log.read_text(errors="replace")
        for server in ended:
            self.lost(server)


def page_ports() -> Iterator[dict[str, str]]:
    """The defaults when both are free, then twice ports free at the time (see the docstring)."""
    if all(port_is_free(int(port)) for port in DEFAULTS):
        yield {port: port for port in DEFAULTS}
    for _ in range(2):
        yield {port: str(free_port()) for port in DEFAULTS}
