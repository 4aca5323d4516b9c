"""Reader for conmon's k8s-file container logs, across rotated (and gzip-compressed) generations.

conmon writes one record per chunk it read from the container:
``<RFC3339Nano time> <stdout|stderr> <P|F> <content>\\n``; ``P`` marks a partial line (the chunk
did not end in a newline), ``F`` the chunk that completes it. Readers here join partials per
stream and yield ``(stream, line, time_ns)`` where ``line`` is bytes ending in b"\\n" (only a
stream's very last, unterminated line lacks it; a line longer than ``MAX_LINE`` comes out in
pieces, as Docker's 16 KiB partial messages do, so no reader buffers a newline-less flood) and
``time_ns`` is the first chunk's time.

Generations on disk (written by conmon, kept by ``dockyard.engine.logs.LogRotator``): ``log`` is
conmon's current file; ``log.keep`` a second name of it, or of one conmon has just replaced and the
keeper not yet shifted in; ``log.1`` ... ``log.N`` are older generations, newest first, each
possibly ``.gz``. conmon may rotate between the P and F records of a line, so the oldest kept
generation can begin with the end of a line whose start is gone. This module only reads: it never
writes, truncates or renames a log.

Following: ``Tail`` reads a generation to its end and then moves to the next one, either from
``Pins`` (files the keeper opened the moment conmon renamed them in, so a follower that is
behind still gets every generation) or, without a keeper, by noticing ``log`` names a new inode.
conmon closes a generation before it renames the next one in, so once the next is known, reading
the current one to EOF once more gives all of it: no line is lost or split at a switch.
"""

import asyncio
import calendar
import collections
import gzip
import os
import threading
import time
from typing import NamedTuple

STREAMS = (b"stdout", b"stderr")
MAX_LINE = 64 * 1024  # longer lines are handed on in pieces of about this size
_CHUNK = 65536


class Record(NamedTuple):
    """One raw record as conmon wrote it."""

    time_ns: int
    stream: str  # "stdout" | "stderr"
    partial: bool  # P: the line continues in the stream's next record
    content: bytes


_sec_cache: dict[bytes, int] = {}


_last_time = (b"", 0)  # one tuple, replaced whole: safe to share between threads


def parse_time(ts: bytes) -> int:
    """RFC3339 with optional fraction and a Z or ±hh:mm offset -> ns since the epoch."""
    global _last_time
    last = _last_time
    if ts == last[0]:
        return last[1]  # conmon stamps every record of one read with the same time
    ns = _parse_time(ts)
    _last_time = (ts, ns)
    return ns


def _parse_time(ts: bytes) -> int:
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
        self.offset = 0  # see read_entries(carry=...)

    def feed(self, rec: Record):
        """Returns the finished (stream, line, time_ns) or None while a line is partial."""
        t, stream, partial, content = rec
        first_t, chunks = self.pending.pop(stream, (t, []))
        chunks.append(content)
        if partial:
            if sum(map(len, chunks)) < MAX_LINE:
                self.pending[stream] = (first_t, chunks)
                return None
            return stream, b"".join(chunks), first_t  # a piece of a very long line
        return stream, b"".join(chunks) + b"\n", first_t

    def flush(self):
        """Unterminated lines, as they are (the stream ended without a newline)."""
        out = [(s, b"".join(c), t) for s, (t, c) in self.pending.items()]
        self.pending.clear()
        return sorted(out, key=lambda e: e[2])



def _open(name: str):
    return gzip.open(name, "rb") if name.endswith(".gz") else open(name, "rb")


def _rotated(path: str) -> list[str]:
    """``log.N`` ... ``log.1`` (each plain or .gz), oldest first."""
    out, n = [], 1
    while True:
        name = next((c for c in (f"{path}.{n}", f"{path}.{n}.gz") if os.path.exists(c)), None)
        if name is None:
            return out[::-1]
        out.append(name)
        n += 1


def log_files(path: str) -> list[str]:
    """Every generation oldest first: ``log.N`` ... ``log.1``, ``log.keep`` while it is a
    generation not yet shifted in (another inode than ``log``), then ``log`` itself (if present)."""
    files = _rotated(path)
    try:
        keep = os.stat(path + ".keep")
        try:
            cur = os.stat(path).st_ino
        except FileNotFoundError:
            cur = None
        if keep.st_ino != cur:
            files.append(path + ".keep")
    except FileNotFoundError:
        pass
    return files + ([path] if os.path.exists(path) else [])


def open_generations(path: str) -> list:
    """``log_files`` opened (gzip ones decompressing), oldest first. Retried when the keeper
    shifted names while we opened them, so no generation is missed or read twice."""
    for attempt in range(5):
        opened = []
        for name in log_files(path):
            try:
                opened.append((name, _open(name)))
            except FileNotFoundError:
                pass
        try:
            stable = all(os.stat(n).st_ino == os.fstat(f.fileno()).st_ino for n, f in opened)
        except FileNotFoundError:
            stable = False
        if stable or attempt == 4:
            return [f for _, f in opened]
        for _, f in opened:
            f.close()


def current_offset(path: str) -> int:
    """Where a follower should start to continue exactly after ``read_entries(end_offset=...)``."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def _records(f, end: int | None, done: list | None = None):
    """Complete records of an open file up to ``end``; a trailing record still being written
    (no newline yet) is left for a follower. ``done[0]`` gets the offset after the last one."""
    pos = 0
    for line in f:
        if end is not None and pos + len(line) > end:
            return
        if not line.endswith(b"\n"):
            return
        pos += len(line)
        if done is not None:
            done[0] = pos
        try:
            yield parse_record(line)
        except ValueError:
            continue  # a damaged record must not hide the rest of the log


def read_entries(path: str, since_ns: int = 0, until_ns: int = 0, tail: int = -1, end_offset: int | None = None,
                 upto: tuple | None = None, carry: Joiner | None = None):
    """Yield (stream, line, time_ns) from the whole history, partials joined.

    ``since_ns``/``until_ns`` (0 = unbounded) keep lines with since <= time <= until; ``tail`` >= 0
    keeps only the last N of those. ``end_offset`` stops reading ``path`` itself there;
    ``upto=(inode, offset)`` instead stops at that offset of the generation with that inode and
    ignores newer ones. To follow on from there (``Tail``) without splitting a line, pass
    ``carry``: it joins, keeps the unfinished lines instead of flushing them, and its ``offset``
    becomes where the last complete record in that generation ends.
    """
    def entries():
        j = carry or Joiner()
        files = open_generations(path)
        try:
            for f in files:
                ino = os.fstat(f.fileno()).st_ino
                done = None
                if upto is not None:
                    end = upto[1] if ino == upto[0] else None
                    if carry is not None and ino == upto[0]:
                        done = [0]
                else:
                    end = end_offset if f is files[-1] and getattr(f, "name", None) == path else None
                for rec in _records(f, end, done):
                    e = j.feed(rec)
                    if e:
                        yield e
                    if done is not None:
                        carry.offset = done[0]
                if upto is not None and ino == upto[0]:
                    break
            if carry is None:
                yield from j.flush()
        finally:
            for f in files:
                f.close()

    def wanted(e):
        return (not since_ns or e[2] >= since_ns) and (not until_ns or e[2] <= until_ns)

    if tail is not None and tail >= 0:
        yield from collections.deque((e for e in entries() if wanted(e)), maxlen=tail)
    else:
        yield from (e for e in entries() if wanted(e))


class Pins:
    """Generations a keeper opened for one reader as conmon renamed them in, oldest first.

    Holding them open keeps a replaced or rotated-away file readable until the reader got to it.
    At most ``cap`` are held: past that the oldest is closed and counted in ``dropped`` (a reader
    that far behind loses that generation rather than pinning unbounded disk space).
    """

    def __init__(self, cap: int = 64):
        self.cap, self.dropped = cap, 0
        self._files = collections.deque()
        self._lock = threading.Lock()  # the keeper pushes from its thread

    def push(self, f):
        with self._lock:
            self._files.append(f)
            while len(self._files) > self.cap:
                self._files.popleft().close()
                self.dropped += 1

    def pop(self):
        with self._lock:
            return self._files.popleft() if self._files else None

    def pending_bytes(self) -> int:
        with self._lock:
            return sum(os.fstat(f.fileno()).st_size for f in self._files)

    def close(self):
        with self._lock:
            while self._files:
                self._files.popleft().close()


class Tail:
    """Reads a log onward from an open file, generation after generation (synchronous).

    ``f`` is the generation to start in, positioned where to start (None: ``path`` does not exist
    yet). Successors come from ``pins`` when given, else from ``path`` naming a new inode.
    """

    def __init__(self, f, path: str, pins: Pins | None = None, joiner: Joiner | None = None):
        self.f, self.path, self.pins = f, path, pins
        self._next = None
        self._buf = b""
        self._j = joiner or Joiner()
        self.eof = False  # the last read() stopped at the end of what exists

    def _successor(self):
        # Compared with the open current file only: inode numbers of deleted files are reused.
        cur = os.fstat(self.f.fileno()).st_ino if self.f else None
        if self.pins is not None:
            while (nf := self.pins.pop()) is not None:
                if os.fstat(nf.fileno()).st_ino != cur:
                    return nf
                nf.close()  # the generation we are reading (pinned before we opened it)
            return None
        try:
            nf = open(self.path, "rb")
        except FileNotFoundError:
            return None
        if os.fstat(nf.fileno()).st_ino == cur:
            nf.close()
            return None
        return nf

    def read(self, max_bytes: int = 1 << 20) -> list:
        """Entries available now, up to about ``max_bytes`` of log read."""
        out, done = [], 0
        self.eof = False
        while done < max_bytes:
            chunk = self.f.read(_CHUNK) if self.f else b""
            if chunk:
                done += len(chunk)
                *lines, self._buf = (self._buf + chunk).split(b"\n")
                for line in lines:
                    try:
                        e = self._j.feed(parse_record(line))
                    except ValueError:
                        continue
                    if e:
                        out.append(e)
                continue
            if self._next is not None:
                # We read to EOF after the successor appeared: this generation is complete.
                if self.f:
                    self.f.close()
                self.f, self._next, self._buf = self._next, None, b""
                continue
            self._next = self._successor()
            if self._next is None:
                self.eof = True
                break
        return out

    def lag(self) -> int:
        """Bytes written but not read yet (this generation's rest and the pinned ones)."""
        rest = 0
        if self.f:
            rest = os.fstat(self.f.fileno()).st_size - self.f.tell()
        if self._next is not None:
            rest += os.fstat(self._next.fileno()).st_size
        return rest + (self.pins.pending_bytes() if self.pins else 0)

    def finish(self) -> list:
        """Unterminated lines once nothing more will come."""
        return self._j.flush()

    def close(self):
        for f in (self.f, self._next):
            if f:
                f.close()
        self.f = self._next = None
        if self.pins:
            self.pins.close()


async def follow(path: str, start_offset: int, stop_event: asyncio.Event, poll: float = 0.05,
                 file=None, pins: Pins | None = None, on_stop=None, joiner: Joiner | None = None,
                 batched: bool = False):
    """Async-yield (stream, line, time_ns) appended to the log from ``start_offset`` on (with
    ``batched``, lists of them: what one read of the file gave).

    ``file`` is the generation to start in (default: ``path`` opened now). With ``pins``,
    generations come from the keeper; without, a rename of ``path`` is noticed by its inode. When
    ``stop_event`` is set (the container exited), ``on_stop()`` runs (the keeper's last look),
    what is written is drained, unterminated lines are flushed, and the generator ends.
    """
    if file is None:
        try:
            file = open(path, "rb")
            file.seek(start_offset)
        except FileNotFoundError:
            file = None  # not created yet: it will start empty
    t = Tail(file, path, pins, joiner)
    try:
        while True:
            stopping = stop_event.is_set()
            if stopping and on_stop:
                on_stop()
            while True:
                got = t.read(256 * 1024)
                if batched:
                    if got:
                        yield got
                else:
                    for e in got:
                        yield e
                if t.eof:
                    break
                await asyncio.sleep(0)  # a flood must not hold the event loop
            if stopping:
                rest = t.finish()
                if batched:
                    if rest:
                        yield rest
                else:
                    for e in rest:
                        yield e
                return
            try:
                await asyncio.wait_for(stop_event.wait(), poll)
            except asyncio.TimeoutError:
                pass
    finally:
        t.close()
