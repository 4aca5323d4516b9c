"""Container logs: reading them, keeping rotated generations, and shipping syslog containers' lines.

Rotation (why it is built this way), from experiments with conmon 2.1.6:
* At ``--log-size-max`` conmon itself fsyncs and closes the log, opens ``log.tmp`` (O_CREAT|O_TRUNC)
  and renames it over ``log`` (strace); the old inode is gone unless it has another name. This
  path loses nothing, needs no daemon, and holds the size at any speed.
* Rotating by rename plus conmon's "reopen log" ctl message (what this module used to do) loses
  output under load: 20000 lines in, ~17900 out. So the engine never asks conmon to rotate.
So conmon always gets max-size as its cap, and the keeper only keeps older generations: each new
inode of ``log`` gets a second name ``log.keep`` (inotify on the container's directory, handled in
a thread of its own), and once conmon has replaced it, ``log.keep`` shifts to ``log.1`` (``log.1`` ->
``log.2`` ..., the oldest past max-file deleted) and is gzipped for ``compress``. To give the keeper
a whole generation of slack, it also leaves an empty ``log.tmp`` (also named ``log.next``) for
conmon to open: the next generation is then linked from birth.

Bounds and slack: on disk at most max-file generations of at most max-size (conmon's cap), plus one
more between conmon's rename and the keeper's shift: (max-file + 1) x max-size. A generation is lost
(a gap in the history, never a split line) only if conmon fills two whole generations before the
keeper thread runs: 42 ms for 10m at the 470 MB/s conmon reaches here, so under a full-speed flood
generations of a few hundred KiB can be lost; the interpreter's switch interval is lowered so that
the keeper, whose every syscall gives up the GIL, is not kept waiting 5 ms each time by a busy
event loop. With the daemon down, conmon still caps the file; the generations it replaces then
are lost.

Followers (``logs -f``) and the syslog shipper get each new generation as an open file from the
keeper (``logfile.Pins``), opened when it appeared, so one that is behind still reads every line
even after the file was rotated away. That costs disk: generations rotated away but not read yet
stay allocated until the follower has read them, at most ``PIN_BUDGET`` per follower; one further
behind loses the oldest pinned generations.

The syslog shipper is one asyncio task for every syslog container: it reads each one's log (the
spool, which is also the dual-logging cache ``logs`` reads) from a cursor persisted next to the
log, so after a daemon restart it resumes where it stopped without sending a line twice: the cursor
is a fixed-size record rewritten in place (one pwrite) after every line sent, so a kill -9 can only
fall between a send and its cursor write, a window of a few bytecodes rather than a whole batch. Non-blocking mode: more than max-buffer-size behind,
it drops lines (counted in ``dropped``, one warning per container).
"""

import asyncio
import contextlib
import ctypes
import gzip
import json
import logging
import os
import select
import shutil
import socket
import struct
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from dockyard import errdefs
from dockyard.engine import LogEntry, logdrivers
from dockyard.runtime import logfile

log = logging.getLogger("dockyard.logs")

PIN_BUDGET = 1 << 30  # bytes of unread generations one follower may hold open
_HISTORY_BATCH = 2048  # entries per worker-thread hop while reading history

_IN_MOVED_TO, _IN_CREATE = 0x80, 0x100
_IN_Q_OVERFLOW, _IN_IGNORED, _IN_ONLYDIR = 0x4000, 0x8000, 0x01000000
_EVENT = struct.Struct("iIII")
_libc = ctypes.CDLL(None, use_errno=True)


def plan_of(c) -> logdrivers.LogPlan:
    try:
        return logdrivers.plan_for(c.host_config)
    except errdefs.InvalidArgument:  # a row from before a rule existed: json-file's defaults
        return logdrivers.validate("json-file", {})


async def read_logs(c, engine, stdout, stderr, follow, since_ns, until_ns, tail):
    """Async iterator of LogEntry for container ``c`` (see Engine.logs)."""
    batches = read_log_batches(c, engine, stdout, stderr, follow, since_ns, until_ns, tail)
    async with contextlib.aclosing(batches):
        async for batch in batches:
            for e in batch:
                yield e


async def read_log_batches(c, engine, stdout, stderr, follow, since_ns, until_ns, tail):
    """read_logs in lists of LogEntry, as the file gave them: the API sends one chunk per list
    (a chunk per line made `docker logs` of 200k lines take 1.3 s)."""
    want = {"stdout": stdout, "stderr": stderr}
    stop = engine._exited.get(c.id) if follow else None
    keeper = engine._rotator
    # Pins first, then the current file: a rotation in between is in the pins (deduplicated by
    # inode), so history up to a fixed point and following from exactly there leave no gap.
    pins = keeper.subscribe(c.id) if (stop is not None and keeper) else None
    try:
        f = open(c.log_path, "rb")
        st = os.fstat(f.fileno())
        upto = (st.st_ino, st.st_size)
    except FileNotFoundError:
        f, upto = None, None
    # Following: history hands its unfinished lines and the end of its last complete record on.
    carry = logfile.Joiner() if stop is not None else None
    history = logfile.read_entries(c.log_path, since_ns, until_ns, tail, upto=upto, carry=carry)
    try:
        while True:
            # In batches: a 1 GB log must not be read into memory at once.
            batch = await asyncio.to_thread(lambda: [e for _, e in zip(range(_HISTORY_BATCH), history)])
            out = [LogEntry(stream, line, t) for stream, line, t in batch if want.get(stream)]
            if out:
                yield out
            if len(batch) < _HISTORY_BATCH:
                break
        if stop is None:
            return
        on_stop = (lambda: keeper.observe(c.id)) if keeper else None
        if f:
            f.seek(carry.offset)
        follower = logfile.follow(c.log_path, 0, stop, file=f, pins=pins, on_stop=on_stop, joiner=carry,
                                  batched=True)
        f = None  # the follower's now
        async with contextlib.aclosing(follower):
            async for got in follower:
                out = [LogEntry(stream, line, t) for stream, line, t in got
                       if want.get(stream) and (not until_ns or t <= until_ns)]
                if out:
                    yield out
    finally:
        try:
            history.close()  # a client that left mid-history: its files close now
        except ValueError:
            pass  # still running in its worker thread; it closes them when it ends
        if f:
            f.close()
        if pins is not None:
            keeper.unsubscribe(c.id, pins)  # the keeper stops pinning for us


class _Tracked:
    def __init__(self, cid, path, plan, wd):
        self.cid, self.path, self.plan, self.wd = cid, path, plan, wd
        self.base = os.path.basename(path)
        self.ino = None  # the inode of ``log`` last seen
        self.subs: list[logfile.Pins] = []


class LogRotator:
    """The keeper of every running container's log generations (see the module docstring).

    ``track``/``untrack``/``observe``/``prepare`` may be called from any thread.
    """

    def __init__(self, engine):
        self._engine = engine
        self._lock = threading.RLock()
        self._by_cid: dict[str, _Tracked] = {}
        self._by_wd: dict[int, _Tracked] = {}
        self._fd = _libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self._fd < 0:
            raise errdefs.Unavailable(f"inotify_init1: {os.strerror(ctypes.get_errno())}")
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._closed = False
        self._zip = ThreadPoolExecutor(1, thread_name_prefix="log-gzip")
        # The keeper thread must get the GIL within a fraction of a generation's lifetime, and
        # each of its syscalls gives it up once: at the default 5 ms a busy event loop makes one
        # rotation cost tens of ms (measured: generations of 64 KiB lost under a fast writer).
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self._thread = threading.Thread(target=self._run, name="log-keeper", daemon=True)
        self._thread.start()
        self.shipper = SyslogShipper(engine, self)
        for c in list(engine._containers.values()):
            if c.state.running:
                self.track(c)

    # ---- what the engine calls ----
    def prepare(self, c):
        """Before conmon opens the log of a container starting again: move a non-empty log aside
        as a generation, so conmon (which counts from 0 on an existing file) starts a fresh one."""
        plan = plan_of(c)
        if plan.keep < 2:
            return
        try:
            if os.path.getsize(c.log_path) == 0:
                return
        except FileNotFoundError:
            return
        with self._lock:
            t = _Tracked(c.id, c.log_path, plan, -1)
            keep = c.log_path + ".keep"
            self._unprepare(t)
            if _ino(keep) not in (None, _ino(c.log_path)):
                self._shift_in(t)
            if _ino(keep) == _ino(c.log_path):
                os.unlink(c.log_path)
            else:
                os.replace(c.log_path, keep)

    def track(self, c):
        plan = plan_of(c)
        if plan.driver == "none":
            return
        with self._lock:
            if self._closed or c.id in self._by_cid:
                return
            wd = _libc.inotify_add_watch(self._fd, os.path.dirname(c.log_path).encode(),
                                         _IN_CREATE | _IN_MOVED_TO | _IN_ONLYDIR)
            if wd < 0:
                log.warning("cannot watch the log of %s: %s", c.id[:12], os.strerror(ctypes.get_errno()))
                return
            t = _Tracked(c.id, c.log_path, plan, wd)
            self._by_cid[c.id] = self._by_wd[wd] = t
            self._observe(t)
        if plan.syslog:
            self.shipper.add(c, plan)

    def untrack(self, cid):
        with self._lock:
            t = self._by_cid.pop(cid, None)
            if t is None:
                return
            self._observe(t)  # the last generation, before followers drain and stop
            self._unprepare(t)
            if self._by_wd.get(t.wd) is t:
                del self._by_wd[t.wd]
                _libc.inotify_rm_watch(self._fd, t.wd)
        self.shipper.finish(cid)

    def observe(self, cid):
        with self._lock:
            t = self._by_cid.get(cid)
            if t:
                self._observe(t)

    def subscribe(self, cid, history: bool = False) -> logfile.Pins | None:
        """Pins of the generations to come; with ``history``, every generation on disk first
        (opened under the lock, so none is missed or doubled between the two)."""
        with self._lock:
            t = self._by_cid.get(cid)
            if t is None:
                return None
            size = t.plan.size_max
            if history:  # the shipper: what is on disk plus as much again, then it loses the oldest
                cap = 2 * t.plan.keep + 1
            else:
                cap = max(2, PIN_BUDGET // size) if size else 64
            pins = logfile.Pins(cap=cap)
            if history:
                for f in logfile.open_generations(t.path):
                    pins.push(f)
            t.subs.append(pins)
            return pins

    def unsubscribe(self, cid, pins):
        with self._lock:
            t = self._by_cid.get(cid)
            if t and pins in t.subs:
                t.subs.remove(pins)
        pins.close()

    def stop(self):
        with self._lock:
            self._closed = True
        self.shipper.stop()
        os.write(self._wake_w, b"x")
        self._thread.join(5)
        self._zip.shutdown(wait=True)
        for fd in (self._fd, self._wake_r, self._wake_w):
            os.close(fd)

    # ---- the keeper thread ----
    def _run(self):
        p = select.poll()
        p.register(self._fd, select.POLLIN)
        p.register(self._wake_r, select.POLLIN)
        while not self._closed:
            for fd, _ in p.poll():
                if fd == self._wake_r:
                    continue
                try:
                    data = os.read(self._fd, 65536)
                except BlockingIOError:
                    continue
                try:
                    self._events(data)
                except Exception:  # the keeper must outlive any one bad event
                    log.exception("log keeper")

    def _events(self, data: bytes):
        pos, due, overflow = 0, set(), False
        while pos + _EVENT.size <= len(data):
            wd, mask, _, n = _EVENT.unpack_from(data, pos)
            name = data[pos + _EVENT.size:pos + _EVENT.size + n].rstrip(b"\0").decode(errors="replace")
            pos += _EVENT.size + n
            if mask & _IN_Q_OVERFLOW:
                overflow = True
            elif mask & _IN_IGNORED:  # the directory is gone (container removed)
                with self._lock:
                    t = self._by_wd.pop(wd, None)
                    if t and self._by_cid.get(t.cid) is t:
                        del self._by_cid[t.cid]
            else:
                t = self._by_wd.get(wd)
                if t and name == t.base:
                    due.add(wd)
        with self._lock:
            for t in list(self._by_cid.values()) if overflow else [self._by_wd.get(wd) for wd in due]:
                if t:
                    self._observe(t)

    def _observe(self, t: _Tracked):
        """``log`` names a new inode: keep the previous ones as generations, pin the new ones for
        followers, and prepare the file conmon will rename in next (see ``_prepare``)."""
        keep, nxt, tmp = t.path + ".keep", t.path + ".next", t.path + ".tmp"
        # Read in the order conmon changes them (it renames .tmp, then it is ``log``): a .next
        # that .tmp no longer names was renamed in by conmon, and ``log``, read last, is at least
        # that new.
        nino, tino = _ino(nxt), _ino(tmp)
        cur = _ino(t.path)
        if cur is None or cur == t.ino:
            return
        src, fresh = t.path, []
        try:
            if t.plan.size_max:  # generations get replaced: keep them by a second name
                if _ino(keep) not in (None, cur):
                    self._retire(t)
                if nino is not None and nino != tino and nino != cur:
                    # A prepared file conmon used and replaced again before we looked: it was
                    # never seen as current, so followers get it here.
                    fresh.append(open(nxt, "rb"))
                    os.rename(nxt, keep)
                    self._retire(t)
                if nino is not None and nino == cur:
                    os.rename(nxt, keep)  # it was linked from birth
                elif _ino(keep) != cur:
                    os.link(t.path, keep)
                src = keep
                self._prepare(t)
            fresh.append(open(src, "rb"))
        except FileNotFoundError:  # replaced again under us: the next event brings the newest
            for f in fresh:
                f.close()
            return
        t.ino = os.fstat(fresh[-1].fileno()).st_ino
        for f in fresh:
            for pins in t.subs:
                pins.push(open(f"/proc/self/fd/{f.fileno()}", "rb"))  # each reader its own offset
            f.close()

    def _prepare(self, t: _Tracked):
        """conmon opens ``log.tmp`` with O_CREAT|O_TRUNC and renames it over ``log``: an empty
        ``log.tmp`` we made and also named ``log.next`` becomes the next generation already
        linked, so it survives even if the keeper is late by up to a whole generation."""
        nxt, tmp = t.path + ".next", t.path + ".tmp"
        if os.path.exists(nxt) or os.path.exists(tmp):
            return
        os.close(os.open(nxt, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        try:
            os.link(nxt, tmp)
        except FileExistsError:  # conmon is rotating right now with its own
            os.unlink(nxt)

    def _unprepare(self, t: _Tracked):
        nxt, tmp = t.path + ".next", t.path + ".tmp"
        if _ino(nxt) is not None and _ino(nxt) == _ino(tmp):
            _unlink(tmp)
            _unlink(nxt)

    def _retire(self, t: _Tracked):
        """``log.keep`` is no longer current: rotate it in, or drop it when only one file is kept."""
        if t.plan.keep > 1:
            self._shift_in(t)
        else:
            _unlink(t.path + ".keep")

    def _shift_in(self, t: _Tracked):
        """``log.keep`` becomes ``log.1``; older ones move up; the one past max-file goes."""
        base, n = t.path, t.plan.keep - 1
        for sfx in ("", ".gz"):
            _unlink(f"{base}.{n}{sfx}")
        for k in range(n - 1, 0, -1):
            for sfx in ("", ".gz"):
                try:
                    os.rename(f"{base}.{k}{sfx}", f"{base}.{k + 1}{sfx}")
                except FileNotFoundError:
                    pass
        os.rename(base + ".keep", base + ".1")
        if t.plan.compress:
            # Opened now and held: while open, its inode number cannot name another file, so
            # the worker finds it again by that number after any shifts.
            self._zip.submit(self._compress, t, open(base + ".1", "rb"))

    def _find(self, t, ino):
        for k in range(1, t.plan.keep):
            if _ino(f"{t.path}.{k}") == ino:
                return f"{t.path}.{k}"
        return None

    def _compress(self, t: _Tracked, src):
        """gzip one rotated generation (worker thread); it may be shifted meanwhile, so it is
        found again by inode before the .gz takes its place."""
        tmp = t.path + ".gz-tmp"
        ino = os.fstat(src.fileno()).st_ino
        try:
            with src:
                with open(tmp, "wb") as raw, gzip.GzipFile("", "wb", 1, raw, mtime=0) as gz:
                    shutil.copyfileobj(src, gz, 1 << 20)
                with self._lock:  # src still open: ``ino`` is still this generation's
                    name = self._find(t, ino)
                    if name:  # else rotated out meanwhile
                        os.rename(tmp, name + ".gz")
                        os.unlink(name)
        except OSError as e:
            log.warning("compressing a log of %s: %s", t.cid[:12], e)
        finally:
            _unlink(tmp)


def _ino(path):
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _Ship:
    """One syslog container's shipping state."""

    def __init__(self, c, plan, pins):
        self.cid, self.plan, self.conf = c.id, plan, plan.syslog
        self.tag = logdrivers.render_tag(self.conf["tag"], c)
        self.tail = logfile.Tail(None, c.log_path, pins)
        self.cursor_path = os.path.join(os.path.dirname(c.log_path), "syslog-cursor.json")
        try:
            with open(self.cursor_path) as f:
                cur = json.load(f)
            self.t, self.n = int(cur["t"]), int(cur["n"])
        except (OSError, ValueError, KeyError, TypeError):
            self.t, self.n = 0, 0  # nothing shipped yet: the whole log
        self.skip = (self.t, self.n)  # what a previous run already shipped
        self.cursor_fd = None
        self.pending: list = []  # read, not sent yet (the receiver failed)
        self.sock = None
        self.retry_at = 0.0
        self.dropped, self.warned, self.finishing = 0, False, False


class SyslogShipper:
    """One asyncio task ships the new lines of every syslog container (module docstring)."""

    BATCH = 256 * 1024  # bytes of log read per container per turn

    def __init__(self, engine, keeper):
        self._engine, self._keeper = engine, keeper
        self._loop = asyncio.get_running_loop()
        self._ships: dict[str, _Ship] = {}
        self._task = None
        self._hostname, self._pid = logdrivers.hostname(), os.getpid()

    def add(self, c, plan):
        """Start shipping ``c`` (any thread): from its cursor, across the generations on disk."""
        self._loop.call_soon_threadsafe(self._add, c, plan)

    def _add(self, c, plan):
        if c.id in self._ships:
            return
        pins = self._keeper.subscribe(c.id, history=True)
        if pins is None:
            return
        self._ships[c.id] = _Ship(c, plan, pins)
        if self._task is None:
            self._task = self._loop.create_task(self._run())

    def finish(self, cid):
        """The container exited: ship what is left, then stop."""
        self._loop.call_soon_threadsafe(self._finish, cid)

    def _finish(self, cid):
        if cid in self._ships:
            self._ships[cid].finishing = True

    def dropped(self, cid) -> int:
        s = self._ships.get(cid)
        return s.dropped if s else 0

    def stop(self):
        if self._task:
            self._task.cancel()
            self._task = None
        for s in self._ships.values():
            self._close(s)
        self._ships.clear()

    async def _run(self):
        try:
            while self._ships:
                busy = False
                for s in list(self._ships.values()):
                    try:
                        busy |= await self._step(s)
                    except Exception:
                        log.exception("syslog shipping for %s", s.cid[:12])
                        s.retry_at = self._loop.time() + 1
                await asyncio.sleep(0 if busy else 0.05)
        finally:
            self._task = None

    async def _step(self, s: _Ship) -> bool:
        if s.pending and self._loop.time() < s.retry_at:
            return False
        if not s.pending:
            s.pending = [e for e in s.tail.read(self.BATCH) if self._new(s, e)]
            if s.finishing and s.tail.eof and not s.pending:
                s.pending = s.tail.finish()
        if s.plan.non_blocking:
            self._shed(s)
        if not s.pending:
            if s.finishing and s.tail.eof:
                self._close(s)
                del self._ships[s.cid]
            return False
        sent = 0
        try:
            sock = await self._connect(s)
            stream = sock.type == socket.SOCK_STREAM
            for stream_name, line, t in s.pending:
                msg = logdrivers.syslog_message(s.conf["format"], s.conf["facility"], stream_name, s.tag, line, t,
                                                self._hostname, self._pid)
                if stream:
                    await self._loop.sock_sendall(sock, msg)
                elif s.plan.non_blocking:
                    sock.send(msg)
                else:
                    await self._send_datagram(sock, msg)
                sent += 1
                self._advance(s, t)
                self._save_cursor(s)
        except BlockingIOError:  # a full receiver queue, in non-blocking mode: no waiting
            s.retry_at = self._loop.time() + 0.05
        except OSError as e:
            # The receiver is gone or refuses: keep the rest and try again in a second.
            if not s.warned:
                log.warning("syslog for %s: %s; retrying", s.cid[:12], e)
                s.warned = True
            self._disconnect(s)
            s.retry_at = self._loop.time() + 1
        del s.pending[:sent]
        return sent > 0

    @staticmethod
    def _advance(s: _Ship, t: int):
        s.t, s.n = (t, s.n + 1) if t == s.t else (t, 1)

    def _new(self, s: _Ship, e) -> bool:
        """False for lines a previous daemon already shipped (the cursor: time and count at it)."""
        t0, n0 = s.skip
        if e[2] < t0:
            return False
        if e[2] == t0 and n0 > 0:
            s.skip = (t0, n0 - 1)
            return False
        s.skip = (0, 0)
        return True

    def _shed(self, s: _Ship):
        """non-blocking: more than max-buffer-size behind, drop the oldest lines (counted)."""
        behind = s.tail.lag() + sum(len(e[1]) for e in s.pending)
        if behind <= s.plan.buffer:
            return
        dropped = s.pending
        while (excess := s.tail.lag() - s.plan.buffer // 2) > 0:
            batch = [e for e in s.tail.read(min(excess, self.BATCH)) if self._new(s, e)]
            if not batch and s.tail.eof:
                break
            dropped += batch
        for e in dropped:
            self._advance(s, e[2])
        drop = len(dropped)
        s.pending = []
        s.dropped += drop
        self._save_cursor(s)
        if drop and s.dropped == drop:
            log.warning("syslog for %s is %d bytes behind (max-buffer-size %d): dropping lines", s.cid[:12],
                        behind, s.plan.buffer)

    async def _send_datagram(self, sock, msg):
        while True:
            try:
                sock.send(msg)
                return
            except BlockingIOError:  # a full receiver queue (unixgram): wait, this is blocking mode
                fut = self._loop.create_future()
                self._loop.add_writer(sock.fileno(), lambda: fut.done() or fut.set_result(None))
                try:
                    await asyncio.wait_for(fut, 1)
                except asyncio.TimeoutError:
                    pass
                finally:
                    self._loop.remove_writer(sock.fileno())

    async def _connect(self, s: _Ship):
        if s.sock is not None:
            return s.sock
        scheme, target = s.conf["address"]
        if scheme in ("unix", "unixgram"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM if scheme == "unix" else socket.SOCK_DGRAM)
        else:
            host, port = target
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM if scheme == "tcp" else socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            await self._loop.sock_connect(sock, target)
        except BaseException:
            sock.close()
            raise
        s.sock = sock
        return sock

    def _disconnect(self, s: _Ship):
        if s.sock is not None:
            s.sock.close()
            s.sock = None

    def _close(self, s: _Ship):
        self._disconnect(s)
        if s.cursor_fd is not None:
            os.close(s.cursor_fd)
            s.cursor_fd = None
        lost = s.tail.pins.dropped if s.tail.pins else 0
        s.tail.close()
        if s.dropped or lost:
            log.warning("syslog for %s dropped %d lines (non-blocking) and %d whole generations (too far behind)",
                        s.cid[:12], s.dropped, lost)

    CURSOR_SIZE = 128

    def _save_cursor(self, s: _Ship):
        """Rewrite the cursor record in place: one pwrite of a fixed-size JSON object padded with
        spaces, so the file is never seen half old, half new (module docstring)."""
        rec = b'{"t": %d, "n": %d, "dropped": %d}' % (s.t, s.n, s.dropped)
        try:
            if s.cursor_fd is None:
                s.cursor_fd = os.open(s.cursor_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.pwrite(s.cursor_fd, rec.ljust(self.CURSOR_SIZE), 0)
        except OSError as e:  # the container was removed meanwhile
            log.debug("syslog cursor of %s: %s", s.cid[:12], e)
