"""HTTP/1.1 over a Unix socket for the Docker Engine API: h11 on asyncio, routing, streams, hijack.

We own the socket (no framework) because attach/exec "hijack" the connection: after a ``101 UPGRADED``
written on its own, the socket becomes a raw byte pipe (docker-py loses bytes that share a recv with
the 101 header block, so nothing else may follow it in the same write). Handlers get a ``Request``
and return one of ``Response`` (whole body), ``Stream`` (chunked, headers flushed before the first
item, cancelled when the client goes away) or ``Hijack`` (raw socket). errdefs become HTTP status
codes here and nowhere else. Every response carries ``Api-Version`` and ``Server``.
"""

import asyncio
import contextlib
import http
import json
import logging
import re
import select
import sys
import traceback
import urllib.parse
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

import h11

from dockyard import __version__, errdefs

log = logging.getLogger("dockyard.api")

API_VERSION = "1.44"
MIN_API_VERSION = "1.24"
# The Go client reads the daemon's OS (for stats and build) from this header, but only when it
# matches `\ADocker/.+\s\((.+)\)\z` (client/utils.go): "Docker/" must lead, "(<os>)" must end it.
SERVER_HEADER = f"Docker/dockyard-{__version__} (linux)"
_BASE_HEADERS = [
    ("Api-Version", API_VERSION),
    ("Ostype", "linux"),
    ("Docker-Experimental", "false"),
    ("Server", SERVER_HEADER),
]

# errdefs kind -> HTTP status; the one place this mapping exists.
_STATUS = [
    (errdefs.NotFound, 404),
    (errdefs.AlreadyExists, 409),
    (errdefs.Conflict, 409),
    (errdefs.InvalidArgument, 400),
    (errdefs.NotModified, 304),
    (errdefs.Forbidden, 403),
    (errdefs.FailedPrecondition, 412),
    (errdefs.Unavailable, 503),
    (errdefs.NotImplemented, 501),
]


class HTTPError(Exception):
    """An answer with a status that has no errdefs kind (501, 401); API-layer only."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def status_of(exc: BaseException) -> int:
    if isinstance(exc, HTTPError):
        return exc.status
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code
    return 500


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: list = field(default_factory=list)


def json_response(obj, status: int = 200) -> Response:
    return Response(status, json.dumps(obj).encode(), "application/json")


def error_response(exc: BaseException) -> Response:
    status = status_of(exc)
    if status == 304:
        return Response(304)
    msg = str(exc) or type(exc).__name__
    return json_response({"message": msg}, status)


@dataclass
class Stream:
    """A chunked response; ``body`` yields bytes. Headers go out before the first item is awaited
    (``wait`` relies on that: the CLI sends ``start`` only after the wait headers arrived)."""

    body: AsyncIterator[bytes]
    content_type: str = "application/json"
    status: int = 200
    headers: list = field(default_factory=list)


@dataclass
class Hijack:
    """Take over the socket. ``run(reader, writer, early)`` gets bytes that arrived with the request
    (``early``); the server has already written the 101 (or 200 for clients without Upgrade) and
    closes the connection when ``run`` returns. ``cleanup`` runs if ``run`` never starts."""

    run: Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]
    content_type: str = "application/vnd.docker.raw-stream"
    cleanup: Callable[[], Awaitable[None]] | None = None


def parse_bool(v: str | None, default: bool = False) -> bool:
    # moby httputils.BoolValue: false iff empty/0/no/false/none.
    if v is None:
        return default
    return v.strip().lower() not in ("", "0", "no", "false", "none")


def parse_filters(raw: str | None) -> dict[str, list[str]]:
    """Docker ``filters``: JSON in map form {"k":{"v":true}} (CLI) or list form {"k":["v"]} (docker-py)."""
    if not raw:
        return {}
    try:
        obj = json.loads(raw)
    except ValueError as e:
        raise errdefs.InvalidArgument(f"invalid filter format: {raw!r} is not JSON") from e
    if not isinstance(obj, dict):
        raise errdefs.InvalidArgument("invalid filter format: expected a JSON object")
    out = {}
    for k, v in obj.items():
        if isinstance(v, dict):
            out[k] = [str(x) for x, on in v.items() if on]
        elif isinstance(v, list):
            out[k] = [str(x) for x in v]
        else:
            raise errdefs.InvalidArgument(f"invalid filter format for {k!r}")
    return out


class Request:
    def __init__(self, conn: "_Conn", method: str, path: str, query: dict, headers: dict, params: dict):
        self._conn = conn
        self.method, self.path, self.query, self.headers, self.params = method, path, query, headers, params

    # -- query helpers ---------------------------------------------------------------------------
    def q(self, name: str, default: str | None = None) -> str | None:
        vals = self.query.get(name)
        return vals[-1] if vals else default

    def qlist(self, name: str) -> list[str]:
        return list(self.query.get(name, []))

    def qbool(self, name: str, default: bool = False) -> bool:
        return parse_bool(self.q(name), default)

    def qint(self, name: str, default: int | None = None) -> int | None:
        v = self.q(name)
        if v is None or v == "":
            return default
        try:
            return int(v)
        except ValueError:
            raise errdefs.InvalidArgument(f"invalid value for {name}: {v!r} is not an integer") from None

    def filters(self) -> dict[str, list[str]]:
        return parse_filters(self.q("filters"))

    # -- body ------------------------------------------------------------------------------------
    async def chunks(self) -> AsyncIterator[bytes]:
        """The request body as it arrives (Content-Length or chunked), without buffering it all."""
        if self._conn.h.client_is_waiting_for_100_continue:  # curl, for large uploads
            await self._conn.send(h11.InformationalResponse(status_code=100, headers=[]))
        while True:
            ev = await self._conn.next_event()
            if isinstance(ev, h11.Data):
                yield bytes(ev.data)
            elif isinstance(ev, h11.EndOfMessage) or ev is h11.PAUSED:
                self._conn.body_done = True
                return
            elif isinstance(ev, h11.ConnectionClosed):
                raise ConnectionResetError("client closed the connection mid-body")

    async def body(self) -> bytes:
        if self._conn.body_done:
            return b""
        return b"".join([c async for c in self.chunks()])

    async def json(self) -> dict:
        raw = await self.body()
        if not raw.strip():
            return {}
        try:
            obj = json.loads(raw)
        except ValueError as e:
            raise errdefs.InvalidArgument(f"invalid JSON in request body: {e}") from e
        if obj is None:
            return {}
        if not isinstance(obj, dict):
            raise errdefs.InvalidArgument("invalid request body: expected a JSON object")
        return obj


Handler = Callable[[Request], Awaitable[object]]


class Router:
    """(method, regex over the unversioned path) -> handler, first match wins. Image names contain
    '/' and ':' so their routes match by suffix: ``^/images/(?P<name>.+)/json$``."""

    def __init__(self):
        self.routes: list[tuple[str, re.Pattern, Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler):
        self.routes.append((method, re.compile("^" + pattern + "$"), handler))

    def match(self, method: str, path: str):
        for m, rx, h in self.routes:
            if m == method or (m == "GET" and method == "HEAD"):
                mt = rx.match(path)
                if mt:
                    return h, mt.groupdict()
        return None, {}


_VERSIONED = re.compile(r"^/v([0-9][0-9.]*)(/.*)$")


def _split_version(path: str) -> tuple[str | None, str]:
    m = _VERSIONED.match(path)
    return (m.group(1), m.group(2)) if m else (None, path)


def _vtuple(v: str) -> tuple:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


class _Conn:
    """One client connection: the h11 state machine plus the asyncio stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.h = h11.Connection(h11.SERVER)
        self.body_done = False

    async def next_event(self):
        while True:
            ev = self.h.next_event()
            if ev is h11.NEED_DATA:
                self.h.receive_data(await self.reader.read(65536))
                continue
            return ev

    async def send(self, *events):
        # One write for all the events: the transport sends at once, so each write is a syscall.
        data = b"".join(self.h.send(ev) or b"" for ev in events)
        if data:
            self.writer.write(data)
        await self.writer.drain()

    async def drain_body(self):
        while not self.body_done:
            ev = await self.next_event()
            if isinstance(ev, h11.EndOfMessage) or ev is h11.PAUSED:
                self.body_done = True
            elif isinstance(ev, h11.ConnectionClosed):
                raise ConnectionResetError("client closed the connection mid-body")

    async def wait_gone(self):
        """Return when the client closed the connection while we stream a response to it.
        Anything it sends meanwhile (a pipelined request) is kept for h11."""
        while True:
            data = await self.reader.read(65536)
            if not data:
                return
            self.h.receive_data(data)


def _headers(content_type: str | None, extra=(), length: int | None = None):
    hs = list(_BASE_HEADERS)
    if content_type:
        hs.append(("Content-Type", content_type))
    if length is not None:
        hs.append(("Content-Length", str(length)))
    hs.extend(extra)
    return hs


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def peer_hung_up(writer: asyncio.StreamWriter) -> bool:
    """True when the peer closed both directions. A half-close (shutdown(SHUT_WR), what the docker
    CLI does when it has no stdin) only sets POLLRDHUP; a full close also sets POLLHUP on AF_UNIX.
    moby watches EPOLLHUP for the same reason."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return True
    p = select.poll()
    p.register(sock.fileno(), select.POLLHUP)
    return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in p.poll(0))


class Server:
    def __init__(self, router: Router):
        self.router = router
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task] = set()

    async def start_unix(self, path: str):
        self._server = await asyncio.start_unix_server(self._client, path=path, limit=1 << 20)

    async def close(self):
        if self._server:
            self._server.close()
        for t in list(self._conns):
            t.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        if self._server:
            await self._server.wait_closed()

    async def _client(self, reader, writer):
        task = asyncio.current_task()
        self._conns.add(task)
        conn = _Conn(reader, writer)
        try:
            while True:
                ev = await conn.next_event()
                if not isinstance(ev, h11.Request):
                    break  # ConnectionClosed, or junk after a close
                conn.body_done = False
                if not await self._handle(conn, ev):
                    break
                await conn.drain_body()
                if conn.h.our_state is not h11.DONE or conn.h.their_state is not h11.DONE:
                    break
                conn.h.start_next_cycle()
        except h11.RemoteProtocolError as e:
            # Garbage or an oversized header: answer once if we still can, then hang up.
            if conn.h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                try:
                    await self._respond(conn, json_response({"message": f"bad request: {e}"}, 400))
                except Exception:  # noqa: BLE001 - the peer may be gone already
                    pass
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("connection handler failed")
        finally:
            self._conns.discard(task)
            try:
                writer.close()
            except Exception:
                pass

    async def _handle(self, conn: _Conn, req: h11.Request) -> bool:
        """Serve one request; False means close the connection afterwards."""
        method = req.method.decode()
        target = req.target.decode("latin-1")
        raw_path, _, qs = target.partition("?")
        version, path = _split_version(urllib.parse.unquote(raw_path) if "%" in raw_path else raw_path)
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in req.headers}
        query = urllib.parse.parse_qs(qs, keep_blank_values=True)
        log.debug("%s %s", method, target)
        try:
            if version and _vtuple(version) < _vtuple(MIN_API_VERSION):
                raise errdefs.InvalidArgument(
                    f"client version {version} is too old. Minimum supported API version is "
                    f"{MIN_API_VERSION}, please upgrade your client to a newer version")
            handler, params = self.router.match(method, path)
            if handler is None:  # moby answers a wrong method like an unknown path
                raise errdefs.NotFound("page not found")
            result = await handler(Request(conn, method, path, query, headers, params))
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as e:  # noqa: BLE001 - every failure becomes one JSON error line
            if status_of(e) == 500:
                log.error("%s %s: %s", method, path, "".join(traceback.format_exception(e)).rstrip())
            else:
                log.info("%s %s -> %d %s", method, path, status_of(e), e)
            result = error_response(e)
        if isinstance(result, Hijack):
            return await self._hijack(conn, req, result)
        await conn.drain_body()
        if isinstance(result, Stream):
            return await self._stream(conn, result)
        if result is None:
            result = Response(204)
        await self._respond(conn, result, head=(method == "HEAD"))
        return True

    async def _respond(self, conn: _Conn, r: Response, head=False):
        no_body = r.status in (204, 304) or (100 <= r.status < 200)
        length = None if no_body else len(r.body)
        hs = _headers(None if no_body else r.content_type, r.headers, length)
        events = [h11.Response(status_code=r.status, headers=hs, reason=_reason(r.status))]
        if r.body and not no_body and not head:
            events.append(h11.Data(data=r.body))
        await conn.send(*events, h11.EndOfMessage())

    async def _stream(self, conn: _Conn, s: Stream) -> bool:
        hs = _headers(s.content_type, s.headers) + [("Transfer-Encoding", "chunked")]
        await conn.send(h11.Response(status_code=s.status, headers=hs, reason=_reason(s.status)))

        async def pump():
            # aclosing: a generator cancelled between items still runs its cleanup now, not at GC.
            async with contextlib.aclosing(s.body) as body:
                async for chunk in body:
                    if chunk:
                        await conn.send(h11.Data(data=chunk))
            await conn.send(h11.EndOfMessage())

        pump_t = asyncio.create_task(pump())
        gone_t = asyncio.create_task(conn.wait_gone())
        try:
            done, _ = await asyncio.wait({pump_t, gone_t}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (pump_t, gone_t):
                t.cancel()
            await asyncio.gather(pump_t, gone_t, return_exceptions=True)
        if pump_t in done and not pump_t.cancelled():
            exc = pump_t.exception()
            if exc is None:
                return True
            if isinstance(exc, errdefs.DockyardError):
                log.info("stream ended early: %s", exc)
            elif not isinstance(exc, ConnectionError):
                log.error("stream failed: %s", "".join(traceback.format_exception(exc)).rstrip())
        return False  # client left, or the stream broke after the headers: end the connection

    async def _hijack(self, conn: _Conn, req: h11.Request, hj: Hijack) -> bool:
        started = False
        try:
            await conn.drain_body()
            upgrade = any(k.lower() == b"upgrade" for k, _ in req.headers)
            if upgrade:
                head = (f"HTTP/1.1 101 UPGRADED\r\nContent-Type: {hj.content_type}\r\n"
                        "Connection: Upgrade\r\nUpgrade: tcp\r\n")
            else:
                head = f"HTTP/1.1 200 OK\r\nContent-Type: {hj.content_type}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in _BASE_HEADERS) + "\r\n"
            # The 101 block goes out alone, and the stream only once the client has read it:
            # docker-py reads the stream from beneath a buffered reader and drops bytes that
            # arrive with the header.
            conn.writer.write(head.encode())
            await conn.writer.drain()
            await _until_read(conn.writer)
            early = bytes(conn.h.trailing_data[0])
            started = True
            await hj.run(conn.reader, conn.writer, early)
        finally:
            if not started and hj.cleanup:
                await hj.cleanup()
        return False


async def _until_read(writer, limit: float = 0.02) -> None:
    """Wait until the peer has read everything sent so far, at most ``limit`` seconds.

    On a Unix socket SIOCOUTQ counts the bytes still queued at the receiver (the kernel charges
    them to the sender until read), so this ends as soon as the client took the header, mostly
    within a millisecond. On TCP it counts unacknowledged bytes, which says less: the full wait."""
    import fcntl
    import socket
    import termios

    sock = writer.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX:
        await asyncio.sleep(limit)
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    buf = bytearray(4)
    while loop.time() < deadline:
        try:
            fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf)  # SIOCOUTQ has TIOCOUTQ's number
        except OSError:
            return
        if not int.from_bytes(buf, sys.byteorder):
            return
        await asyncio.sleep(0.0005)


def install_logging(level=logging.INFO):
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("dockyard")
    root.handlers[:] = [h]
    root.setLevel(level)
