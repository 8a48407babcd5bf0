"""The request journal: what each mock was asked and answered, kept in files beside the database.

Each role has one append-only file of JSON lines, `<db>.journal-<role>.jsonl`, which every worker
appends to in its turn on `<db>.journal.lock` (mocks/coordination.py): the order of the lines is
the order of the ids, and an append is one `write` to the file, which a killed process leaves
whole. Past `limit` entries the file becomes `<db>.journal-<role>.1.jsonl` (replacing the one
before) and a new one starts, so the disk holds at most about twice `limit` entries a role and a
read shows the newest `limit`. Counters that the processes share (ids, and which file is current)
are SharedCounters (mocks/coordination.py). Without fcntl (Windows) there are no lock files: one
worker.

A SQLite row a call cost more CPU than a line here (the INSERT, its index and pages in every COMMIT,
and its share of the turns on the writer lock: benchmarks/README.md).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from mpesa_atm.mocks.coordination import JOURNAL_FILES, LAST_JOURNAL_ID, SharedCounters
from mpesa_atm.mocks.records import JournalEntry, JournalRecord, loads_body

__all__ = ["Journal", "dumps"]

ROLES = ("bank", "ipg")
# Per role, two slots from JOURNAL_FILES: the generation of its current file (moved on by a
# rotation or a reset) and the file's lines.
assert (JOURNAL_FILES + 2 * len(ROLES)) * 8 <= SharedCounters.SIZE


# A journal file to read: open (descriptor, length when the snapshot was taken), or the bytes of
# one kept in memory.
Source = tuple[int, int] | bytes
_BLOCK = 64 * 1024


def _lines_backwards(sources: list[Source]) -> Iterator[bytes]:
    """The non-empty lines of `sources` (newest first), last line first."""
    for source in sources:
        if isinstance(source, bytes):
            for line in reversed(source.split(b"\n")):
                if line:
                    yield line
            continue
        descriptor, end = source
        rest = b""  # the start of a line whose beginning is in the block before
        while end > 0:
            start = max(0, end - _BLOCK)
            lines = (os.pread(descriptor, end - start, start) + rest).split(b"\n")
            end = start
            rest = lines[0]
            for line in reversed(lines[1:]):
                if line:
                    yield line
        if rest:
            yield rest


def dumps(value: Any) -> bytes:
    """JSON for the journal: orjson, ten times as fast as json.dumps here (benchmarks/README.md); json
    for what orjson refuses (an integer past 64 bits, a string that is no UTF-8 text)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value).encode()


def _write_whole(descriptor: int, data: bytes) -> None:
    """Appends `data` whole, or nothing of it: a write the disk cannot complete (ENOSPC, EIO) is cut
    back to the file's length before it, so that no half line is left for the next entry to continue
    (the caller holds the journal's lock: no other process appends meanwhile)."""
    view = memoryview(data)
    written = 0
    try:
        while view:
            count = os.write(descriptor, view)
            written += count
            view = view[count:]
    except OSError:
        if written:  # an append leaves the offset at the file's end: its start is `written` before
            end = os.lseek(descriptor, 0, os.SEEK_CUR)
            os.ftruncate(descriptor, end - written)  # frees space: does not fail for want of it
        raise


def _cut_torn(descriptor: int) -> None:
    """Cuts the file back to its last newline if it ends in part of a line: an append whose cut-back
    failed too (_write_whole), by this process or another, left it so, and the next entry must not
    continue that line. One lseek and a one-byte pread an append when the file is whole."""
    end = os.lseek(descriptor, 0, os.SEEK_END)
    if end == 0 or os.pread(descriptor, 1, end - 1) == b"\n":
        return
    start = end
    while start > 0:
        block = max(0, start - _BLOCK)
        newline = os.pread(descriptor, start - block, block).rfind(b"\n")
        if newline >= 0:
            os.ftruncate(descriptor, block + newline + 1)
            return
        start = block
    os.ftruncate(descriptor, 0)


class Journal:
    """The journal files of one database (in memory for `:memory:`). Appending, rotating and
    clearing happen in the caller's turn on the journal's lock; so does taking a snapshot to read."""

    def __init__(self, db_path: str, limit: int, counters: SharedCounters) -> None:
        self.limit = limit
        self.counters = counters
        self._paths = {
            role: (f"{db_path}.journal-{role}.jsonl", f"{db_path}.journal-{role}.1.jsonl") for role in ROLES
        }
        # role -> [older, current]: a database in memory keeps its journal in memory too
        self._memory = {role: [bytearray(), bytearray()] for role in ROLES} if db_path == ":memory:" else None
        self._files: dict[str, tuple[int, int]] = {}  # role -> (generation, descriptor) of its file

    def paths(self, role: str) -> tuple[str, str]:
        """The role's current file and the one before it."""
        return self._paths[role]

    def append(self, records: Sequence[JournalRecord]) -> None:
        """Journals the records, ids in their order, starting a new file where one is full."""
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        first = self.counters[LAST_JOURNAL_ID] + 1
        self.counters[LAST_JOURNAL_ID] = first + len(records) - 1
        lines: dict[str, list[bytes]] = {}
        for entry_id, r in enumerate(records, first):
            line = dumps(
                {
                    "id": entry_id,
                    "at": at,
                    "direction": r.direction,
                    "operation": r.operation,
                    "method": r.method,
                    "url": r.url,
                    "status": r.status,
                    "request": r.request,
                    "response": r.response,
                    "duration_ms": r.duration_ms,
                }
            )
            lines.setdefault(r.role, []).append(line)
        for n, (role, texts) in enumerate(lines.items()):
            try:
                self._write(role, b"\n".join(texts) + b"\n")
            except OSError:
                if n == 0:  # nothing of this append written: its ids are the next append's
                    self.counters[LAST_JOURNAL_ID] = first - 1
                raise
            count = self.counters[self._slot(role) + 1] + len(texts)
            if count >= self.limit:
                self._rotate(role)
                count = 0
            self.counters[self._slot(role) + 1] = count

    def clear(self, role: str) -> None:
        if self._memory is not None:
            self._memory[role] = [bytearray(), bytearray()]
            return
        for path in self._paths[role]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._next_file(role)

    def snapshot(self, role: str) -> list[Source]:
        """The role's files, newest first, each open at its length now (take it in a turn on the
        journal's lock: no append or new file is half done). `entries` reads and closes them; what
        is appended or rotated meanwhile is not in them."""
        if self._memory is not None:
            return [bytes(part) for part in reversed(self._memory[role])]
        sources: list[Source] = []
        for path in self._paths[role]:
            try:
                descriptor = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            sources.append((descriptor, os.fstat(descriptor).st_size))
        return sources

    def entries(
        self,
        snapshot: list[Source],
        role: str,
        operation: str | None,
        limit: int,
        directions: Collection[str] | None = None,
    ) -> list[JournalEntry]:
        """Newest first, of the newest `self.limit` lines of `snapshot`, read from the files' ends:
        a read costs about the entries it returns (or looks through, for `operation`), not the
        journal's size."""
        found: list[JournalEntry] = []
        seen = 0
        try:
            for line in _lines_backwards(snapshot):
                if seen >= self.limit or len(found) >= limit:
                    break
                seen += 1
                try:
                    values = json.loads(line)
                except ValueError:  # a line a power cut tore: not an entry
                    continue
                if operation is not None and values["operation"] != operation:
                    continue
                if directions is not None and values["direction"] not in directions:
                    continue
                values["request"] = loads_body(values["request"])
                values["response"] = loads_body(values["response"])
                found.append(JournalEntry(role=role, **values))
        finally:
            for source in snapshot:
                if isinstance(source, tuple):
                    os.close(source[0])
        return found

    def close(self) -> None:
        for _, descriptor in self._files.values():
            os.close(descriptor)
        self._files.clear()

    def _slot(self, role: str) -> int:
        return JOURNAL_FILES + 2 * ROLES.index(role)

    def _write(self, role: str, data: bytes) -> None:
        if self._memory is not None:
            self._memory[role][1] += data
            return
        generation = self.counters[self._slot(role)]
        opened = self._files.get(role)
        if opened is None or opened[0] != generation:  # none yet, or another process started a new one
            if opened is not None:
                os.close(opened[1])
            # Read too: _cut_torn reads the last byte
            descriptor = os.open(self._paths[role][0], os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            opened = self._files[role] = (generation, descriptor)
        _cut_torn(opened[1])  # an OSError here: nothing of the append written
        _write_whole(opened[1], data)

    def _rotate(self, role: str) -> None:
        if self._memory is not None:
            self._memory[role] = [self._memory[role][1], bytearray()]
            return
        os.replace(*self._paths[role])
        self._next_file(role)

    def _next_file(self, role: str) -> None:
        """Tells every process to open the role's file anew, empty."""
        self.counters[self._slot(role)] += 1
        self.counters[self._slot(role) + 1] = 0
