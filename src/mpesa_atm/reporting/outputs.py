"""The files `fuzz` and `verify` write besides the console (--report, --har, --junit-xml): each checked
writable before anything is sent, and named with its size once the run has written it, on the line
before the summary (which stays last: scripts and docs/fuzzing.md read the verdict there)."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mpesa_atm.errors import UsageError

__all__ = ["BeforeLastLine", "OutputFile", "OutputFiles", "before_last_line", "size_of"]


@dataclass(frozen=True)
class OutputFile:
    flag: str  # the option that names it, e.g. "--report"
    given: str  # the path as the user wrote it
    before: int | None  # its modification time (ns) when checked, None when it did not exist


class OutputFiles:
    """The output files a command was given, checked at once: a file that cannot be written is found
    before a campaign of minutes rather than after it."""

    def __init__(self, files: list[OutputFile]) -> None:
        self.files = files

    @classmethod
    def check(cls, given: Iterable[tuple[str, str | None]]) -> OutputFiles:
        """Each (flag, path) given a path is checked writable; raises UsageError naming the flag:
        `--report /nowhere/x.html: the folder /nowhere does not exist`. A file that did not exist
        is not left behind."""
        files: list[OutputFile] = []
        for flag, path in given:
            if not path:
                continue
            same = next((f for f in files if _same_file(f.given, path)), None)
            if same is not None:
                raise UsageError(f"{flag} {path}: {same.flag} writes that file too")
            problem = _problem(Path(path))
            if problem is not None:
                raise UsageError(f"{flag} {path}: {problem}")
            files.append(OutputFile(flag, path, _mtime(Path(path))))
        return cls(files)

    def written(self) -> str | None:
        """`written: report.html (84 KB), junit.xml (9 KB)`: the files this run wrote (there now,
        and new or changed since the check); None when it wrote none."""
        shown = []
        for file in self.files:
            now = _mtime(Path(file.given))
            if now is not None and now != file.before:
                shown.append(f"{file.given} ({size_of(os.path.getsize(file.given))})")
        return f"written: {', '.join(shown)}" if shown else None


def before_last_line(text: str, line: str | None) -> str:
    """`text` (lines, the last the summary) with `line` put before its last line."""
    if not line:
        return text
    body, newline, last = text.rstrip("\n").rpartition("\n")
    return f"{body}{newline}{line}\n{last}\n"


class BeforeLastLine(io.TextIOBase):
    """sys.stdout for a console reporter whose summary is its last line: what it writes passes through,
    except while held (its closing block); released, the block comes out with the files written named
    before its last line."""

    def __init__(self) -> None:
        self._held: list[str] | None = None

    def isatty(self) -> bool:
        return sys.stdout.isatty()

    def write(self, text: str) -> int:
        if self._held is not None:
            self._held.append(text)
            return len(text)
        return sys.stdout.write(text)

    def flush(self) -> None:
        if self._held is None:
            sys.stdout.flush()

    def hold(self) -> None:
        self._held = []

    def release(self, line: str | None) -> None:
        held, self._held = self._held, None
        if held:
            sys.stdout.write(before_last_line("".join(held), line))
        elif line:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _same_file(one: str, other: str) -> bool:
    return os.path.abspath(one) == os.path.abspath(other)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _problem(path: Path) -> str | None:
    """Why `path` cannot be written as a file, or None. Trying is the only sure check (permissions,
    a read-only mount, ACLs): the file is opened for appending, or created and removed again."""
    if path.is_dir():
        return "is a folder: give a file's name"
    folder = path.parent
    if not folder.exists():
        return f"the folder {folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is not a folder"
    existed = path.exists()
    try:
        with open(path, "ab" if existed else "xb"):
            pass
    except OSError as exc:
        return f"cannot be {'written' if existed else 'created'}: {exc.strerror or exc}"
    if not existed:
        path.unlink(missing_ok=True)
    return None


def size_of(size: int) -> str:
    """A file's size as a person reads it, in decimal units: 512 B, 9.4 KB, 84 KB, 1.2 MB."""
    for unit, scale in (("MB", 1_000_000), ("KB", 1_000)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} B"
