"""Reader for conmon's k8s-file container logs.

conmon writes one record per chunk it read from the container:
``<RFC3339Nano time> <stdout|stderr> <P|F> <content>\\n``; ``P`` marks a partial line (the chunk
did not end in a newline), ``F`` the chunk that completes it. Readers here join partials per
stream and yield ``(stream, line, time_ns)`` where ``line`` is bytes ending in b"\\n" (only a
stream's very last, unterminated line lacks it) and ``time_ns`` is the first chunk's time.

Rotation is by rename: whoever rotates renames ``log`` -> ``log.1`` (``log.1`` -> ``log.2`` ...)
and asks conmon to reopen. The full history is ``log.N`` ... ``log.1``, ``log``. This module only
reads: it never writes, truncates or renames a log.
"""

import asyncio
import calendar
import collections
import os
import time
from typing import NamedTuple

STREAMS = (b"stdout", b"stderr")


class Record(NamedTuple):
    """One raw record as conmon wrote it."""

    time_ns: int
    stream: str  # "stdout" | "stderr"
    partial: bool  # P: the line continues in the stream's next record
    content: bytes


_sec_cache: dict[bytes, int] = {}


def parse_time(ts: bytes) -> int:
    """RFC3339 with optional fraction and a Z or ±hh:mm offset -> ns since the epoch."""
    if len(ts) < 20 or ts[10:11] != b"T":
        raise ValueError(f"bad timestamp {ts[:40]!r}")
    base, rest = ts[:19], ts[19:]
    frac = b""
    if rest[:1] == b".":
        i = 1
        while i < len(rest) and 48 <= rest[i] <= 57:
            i += 1
        frac, rest = rest[1:i], rest[i:]
        if not frac or len(frac) > 9:
            raise ValueError(f"bad fraction in timestamp {ts!r}")
    if rest in (b"Z", b"z"):
        offset = 0
    elif len(rest) == 6 and rest[:1] in (b"+", b"-") and rest[3:4] == b":":
        offset = (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60) * (1 if rest[:1] == b"+" else -1)
    else:
        raise ValueError(f"bad zone in timestamp {ts!r}")
    secs = _sec_cache.get(base)
    if secs is None:
        # Most records in a log share their second: cache the slow calendar conversion.
        t = time.strptime(base.decode("ascii"), "%Y-%m-%dT%H:%M:%S")
        secs = calendar.timegm(t)
        if len(_sec_cache) > 4096:
            _sec_cache.clear()
        _sec_cache[base] = secs
    return (secs - offset) * 1_000_000_000 + int(frac.ljust(9, b"0") or b"0")


def rfc3339nano(ns: int) -> str:
    """ns since the epoch -> Docker's timestamp form (UTC, trailing fraction zeros trimmed)."""
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    f = f"{frac:09d}".rstrip("0")
    return f"{base}.{f}Z" if f else f"{base}Z"


def parse_record(line: bytes) -> Record:
    """One log line (with or without its trailing newline) -> Record; ValueError if malformed."""
    if line.endswith(b"\n"):
        line = line[:-1]
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        raise ValueError(f"malformed log record {line[:80]!r}")
    ts, stream, tag = parts[0], parts[1], parts[2]
    if stream not in STREAMS or tag not in (b"P", b"F"):
        raise ValueError(f"malformed log record {line[:80]!r}")
    content = parts[3] if len(parts) == 4 else b""
    return Record(parse_time(ts), stream.decode(), tag == b"P", content)


class Joiner:
    """Joins partial records per stream into lines. Feed records, collect finished entries."""

    def __init__(self):
        self.pending: dict[str, tuple[int, list[bytes]]] = {}

    def feed(self, rec: Record):
        """Returns the finished (stream, line, time_ns) or None while a line is partial."""
        t, stream, partial, content = rec
        first_t, chunks = self.pending.pop(stream, (t, []))
        chunks.append(content)
        if partial:
            self.pending[stream] = (first_t, chunks)
            return None
        return stream, b"".join(chunks) + b"\n", first_t

    def flush(self):
        """Unterminated lines, as they are (the stream ended without a newline)."""
        out = [(s, b"".join(c), t) for s, (t, c) in self.pending.items()]
        self.pending.clear()
        return sorted(out, key=lambda e: e[2])


def log_files(path: str) -> list[str]:
    """The rotated generations oldest first, then ``path`` itself (if present)."""
    old, n = [], 1
    while os.path.exists(f"{path}.{n}"):
        old.append(f"{path}.{n}")
        n += 1
    return old[::-1] + ([path] if os.path.exists(path) else [])


def current_offset(path: str) -> int:
    """Where a follower should start to continue exactly after ``read_entries(end_offset=...)``."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def _records(f, end: int | None):
    """Complete records of an open file up to ``end``; a trailing record still being written
    (no newline yet) is left for a follower."""
    pos = 0
    for line in f:
        if end is not None and pos + len(line) > end:
            return
        pos += len(line)
        if not line.endswith(b"\n"):
            return
        try:
            yield parse_record(line)
        except ValueError:
            continue  # a damaged record must not hide the rest of the log


def read_entries(path: str, since_ns: int = 0, until_ns: int = 0, tail: int = -1, end_offset: int | None = None):
    """Yield (stream, line, time_ns) from the whole history, partials joined.

    ``since_ns``/``until_ns`` (0 = unbounded) keep lines with since <= time <= until; ``tail`` >= 0
    keeps only the last N of those. ``end_offset`` stops reading ``path`` itself there (pair it
    with ``current_offset`` and ``follow`` for a gapless ``logs -f``).
    """
    def entries():
        j = Joiner()
        files = log_files(path)
        for name in files:
            try:
                f = open(name, "rb")
            except FileNotFoundError:
                continue  # rotated away while we listed
            with f:
                for rec in _records(f, end_offset if name == path else None):
                    e = j.feed(rec)
                    if e:
                        yield e
        yield from j.flush()

    def wanted(e):
        return (not since_ns or e[2] >= since_ns) and (not until_ns or e[2] <= until_ns)

    if tail is not None and tail >= 0:
        yield from collections.deque((e for e in entries() if wanted(e)), maxlen=tail)
    else:
        yield from (e for e in entries() if wanted(e))


async def follow(path: str, start_offset: int, stop_event: asyncio.Event, poll: float = 0.05):
    """Async-yield (stream, line, time_ns) appended to ``path`` from ``start_offset`` on.

    Survives rotation by rename: when ``path`` names a new file, the old one is read to its end,
    then the new one from 0. When ``stop_event`` is set (the container exited), what is already
    written is drained, unterminated lines are flushed, and the generator ends.
    """
    j = Joiner()
    f = None
    buf = b""
    try:
        while True:
            stopping = stop_event.is_set()
            if f is None:
                try:
                    f = open(path, "rb")
                    f.seek(start_offset)
                except FileNotFoundError:
                    f, start_offset = None, 0  # not created yet: it will start empty
            if f is not None:
                while True:
                    chunk = f.read(65536)
                    if chunk:
                        buf += chunk
                        *lines, buf = buf.split(b"\n")
                        for line in lines:
                            try:
                                e = j.feed(parse_record(line))
                            except ValueError:
                                continue
                            if e:
                                yield e
                        continue
                    # At EOF: if path now names another file (rotated), switch to it.
                    try:
                        st = os.stat(path)
                    except FileNotFoundError:
                        break
                    if st.st_ino != os.fstat(f.fileno()).st_ino:
                        f.close()
                        f, buf, start_offset = open(path, "rb"), b"", 0
                        continue
                    break
            if stopping:
                for e in j.flush():
                    yield e
                return
            try:
                await asyncio.wait_for(stop_event.wait(), poll)
            except asyncio.TimeoutError:
                pass
    finally:
        if f is not None:
            f.close()
