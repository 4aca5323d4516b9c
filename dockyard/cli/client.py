"""A small Docker Engine API client over a Unix socket (or TCP): raw HTTP/1.1 on a socket.

The CLI is on the hot path of ``dockyard run`` (benchmarked end to end), so this speaks HTTP/1.1
itself instead of importing http.client (which drags in email and ssl, ~10 ms), and skips the
version ping: it always uses ``/v1.44``, which our daemon claims and every moby since 25.0 accepts
(``DOCKYARD_API_VERSION=1.41`` overrides it, e.g. to drive an older dockerd).
A ``Client`` keeps one keep-alive connection for plain requests; long-lived calls (wait, streams,
the hijacked attach) get their own so they can run next to it.
Sockets are the C type itself (``_socket``): ``socket.py`` only adds enums, ``makefile`` and
TCP helpers on top, and importing it (with ``selectors``) costs ~2 ms of every command.
"""

import json
import os
from _socket import AF_INET, AF_UNIX, SOCK_STREAM
from _socket import socket as Socket

API_PREFIX = "/v1.44"
DEFAULT_HOST = "unix:///run/dockyard.sock"
_CHUNK = 65536


class APIError(Exception):
    """The daemon answered with an error status; ``message`` is its ``{"message": ...}`` text."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class DaemonUnavailable(Exception):
    """Nothing is listening on the host address."""

    def __init__(self, host: str):
        super().__init__(f"Cannot connect to the dockyard daemon at {host}. "
                         "Is the daemon running? Start it with: dockyard daemon &")


class ProtocolError(APIError):
    def __init__(self, message):
        super().__init__(500, message)


def _query(params) -> str:
    """Encode params, dropping None values; lists repeat the key (names=a&names=b)."""
    if not params:
        return ""
    items = []
    for k, v in params.items():
        if v is None:
            continue
        for one in (v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(one, bool):
                one = "1" if one else "0"
            items.append((k, str(one)))
    return "?" + "&".join(f"{_pct(k, plus=True)}={_pct(v, plus=True)}" for k, v in items) if items else ""


# RFC 3986's unreserved characters: never percent-encoded (urllib.parse's rule; that module with
# its imports costs ~2 ms of every command, so the two encoders it would give us live here).
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def _pct(text: str, safe: bytes = b"", plus: bool = False) -> str:
    """urllib.parse.quote (``plus``: quote_plus, as urlencode uses) of ``text`` as UTF-8."""
    ok = _UNRESERVED | frozenset(safe)
    if all(ord(ch) < 128 and ord(ch) in ok for ch in text):
        return text
    return "".join(chr(b) if b in ok else "+" if plus and b == 0x20 else "%%%02X" % b for b in text.encode())


def filters_param(pairs) -> str | None:
    """``["k=v", "k2"]`` from --filter flags -> Docker's map-form filters JSON, or None."""
    out: dict = {}
    for p in pairs or ():
        k, sep, v = p.partition("=")
        if not sep:
            raise ValueError(f"bad format of filter (expected name=value): {p}")
        out.setdefault(k.strip(), {})[v] = True
    return json.dumps(out, separators=(",", ":")) if out else None


def quote(name: str) -> str:
    """Path segment quoting that keeps '/' and ':' (image names live in paths verbatim)."""
    return _pct(name, b"/:@")


class Response:
    """Status, headers and a body reader for one response on a connection."""

    def __init__(self, conn: "_Conn", method: str):
        self.conn = conn
        line = conn.readline()
        if not line:
            raise ConnectionResetError("the daemon closed the connection")
        parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ProtocolError(f"malformed response from the daemon: {line[:80]!r}")
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        self.headers = {}
        while True:
            h = conn.readline().decode("latin-1").rstrip("\r\n")
            if not h:
                break
            k, _, v = h.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        if method == "HEAD" or self.status in (101, 204, 304) or 100 <= self.status < 200:
            self.left = 0
        elif self.chunked:
            self.left = None  # read the first chunk size on demand
        elif "content-length" in self.headers:
            self.left = int(self.headers["content-length"])
        else:
            self.left = -1  # until the server closes
        self.done = self.left == 0

    def getheader(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def read1(self, n: int = _CHUNK) -> bytes:
        """Some body bytes as soon as any are available; b'' at the end of the body."""
        if self.done:
            return b""
        c = self.conn
        if self.chunked:
            if not self.left:
                if self.left == 0:
                    c.readline()  # CRLF after the previous chunk
                size = c.readline().split(b";")[0].strip()
                if not size:
                    raise ProtocolError("truncated chunked response")
                self.left = int(size, 16)
                if self.left == 0:
                    while c.readline().strip():  # trailers
                        pass
                    self.done = True
                    return b""
            data = c.read_some(min(n, self.left))
            if not data:
                raise ProtocolError("truncated chunked response")
            self.left -= len(data)
            return data
        if self.left < 0:
            data = c.read_some(n)
            if not data:
                self.done = True
                c.reusable = False
            return data
        data = c.read_some(min(n, self.left))
        if not data:
            raise ProtocolError("truncated response")
        self.left -= len(data)
        self.done = self.left == 0
        return data

    def read(self) -> bytes:
        parts = []
        while data := self.read1(1 << 20):
            parts.append(data)
        return b"".join(parts)


class _Conn:
    """A socket with a read buffer."""

    def __init__(self, sock: Socket):
        self.sock = sock
        self.buf = b""
        self.reusable = True

    def _fill(self) -> bool:
        data = self.sock.recv(_CHUNK)
        self.buf += data
        return bool(data)

    def readline(self) -> bytes:
        while b"\n" not in self.buf:
            if not self._fill():
                line, self.buf = self.buf, b""
                return line
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read_some(self, n: int) -> bytes:
        if not self.buf and not self._fill():
            return b""
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def close(self):
        self.sock.close()


class Client:
    def __init__(self, host: str = DEFAULT_HOST):
        self.host = host
        version = os.environ.get("DOCKYARD_API_VERSION")
        self.prefix = f"/v{version}" if version else API_PREFIX
        if host.startswith("unix://"):
            self._addr = (AF_UNIX, host[len("unix://"):])
        elif host.startswith("/"):
            self._addr = (AF_UNIX, host)
        elif host.startswith(("tcp://", "http://")):
            import urllib.parse  # TCP only

            u = urllib.parse.urlsplit(host.replace("tcp://", "http://", 1))
            self._addr = (AF_INET, (u.hostname, u.port or 2375))
        else:
            raise ValueError(f"invalid host {host!r}: use unix:///path/to.sock or tcp://host:port")
        self._conn: _Conn | None = None
        self._last: Response | None = None

    def _connect(self) -> _Conn:
        family, addr = self._addr
        try:
            if family == AF_UNIX:
                s = Socket(AF_UNIX, SOCK_STREAM)
                try:
                    s.connect(addr)
                except OSError:
                    s.close()
                    raise
            else:
                import socket  # TCP only: name resolution and address families

                s = socket.create_connection(addr)
        except (FileNotFoundError, ConnectionRefusedError, PermissionError) as e:
            raise DaemonUnavailable(self.host) from e
        return _Conn(s)

    @staticmethod
    def _send(conn: _Conn, method, url, headers, body):
        head = [f"{method} {url} HTTP/1.1", "Host: localhost", "User-Agent: dockyard-cli"]
        stream = body is not None and not isinstance(body, bytes)
        if isinstance(body, bytes):
            headers.setdefault("Content-Length", str(len(body)))
        elif stream and "Content-Length" not in headers:
            headers["Transfer-Encoding"] = "chunked"
        elif body is None and method in ("POST", "PUT"):
            headers.setdefault("Content-Length", "0")
        head += [f"{k}: {v}" for k, v in headers.items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if isinstance(body, bytes):
            conn.sock.sendall(data + body)
            return
        conn.sock.sendall(data)
        if stream:
            chunked = headers.get("Transfer-Encoding") == "chunked"
            while block := body.read(1 << 20):
                conn.sock.sendall(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
            if chunked:
                conn.sock.sendall(b"0\r\n\r\n")

    def open(self, method, path, params=None, body=None, headers=None, own_conn=False) -> Response:
        """Send a request; return the Response with headers read and the body still to read.

        Raises APIError for status >= 400 and DaemonUnavailable when nobody listens.
        ``own_conn`` uses a fresh connection (for bodies read later, e.g. wait and streams).
        """
        hdrs = {}
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        url = self.prefix + path + _query(params)
        for attempt in (0, 1):
            reuse = not own_conn and self._conn is not None and self._conn.reusable and (
                self._last is None or self._last.done)
            if not reuse and not own_conn and self._conn is not None:
                self._conn.close()
                self._conn = None
            conn = self._conn if reuse else self._connect()
            try:
                self._send(conn, method, url, dict(hdrs), body)
                resp = Response(conn, method)
                break
            except (BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server closed meanwhile: retry once on a fresh
                # one, unless the body was a stream we cannot replay.
                conn.close()
                if self._conn is conn:
                    self._conn = None
                if attempt or not reuse or not (body is None or isinstance(body, bytes)):
                    raise
        if resp.headers.get("connection", "").lower() == "close":
            conn.reusable = False
        if not own_conn:
            self._conn, self._last = conn, resp
        if resp.status >= 400:
            raise _error_from(resp)
        return resp

    def call(self, method, path, params=None, body=None, headers=None):
        """A request whose response is read whole: returns decoded JSON, bytes, or None."""
        resp = self.open(method, path, params, body, headers)
        data = resp.read()
        if not data:
            return None
        if resp.getheader("Content-Type", "").startswith("application/json"):
            return json.loads(data)
        return data

    def get(self, path, params=None):
        return self.call("GET", path, params)

    def get_many(self, requests) -> list:
        """GET each ``(path, params)``, pipelined on one fresh connection (all requests written at
        once, then the answers read in order), so the daemon works through them back to back.
        -> decoded JSON or the APIError, per request; whatever a closed connection cut short is
        asked again one by one."""
        conn = self._connect()
        out: list = []
        try:
            data = b"".join((f"GET {self.prefix}{path}{_query(params)} HTTP/1.1\r\nHost: localhost\r\n"
                             "User-Agent: dockyard-cli\r\n\r\n").encode("latin-1") for path, params in requests)
            conn.sock.sendall(data)
            for _ in requests:
                resp = Response(conn, "GET")
                if resp.status >= 400:
                    out.append(_error_from(resp))
                else:
                    body = resp.read()
                    json_body = resp.getheader("Content-Type", "").startswith("application/json")
                    out.append((json.loads(body) if json_body else body) if body else None)
                if resp.headers.get("connection", "").lower() == "close":
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            conn.close()
        for path, params in requests[len(out):]:
            try:
                out.append(self.get(path, params))
            except APIError as e:
                out.append(e)
        return out

    def post(self, path, params=None, body=None):
        return self.call("POST", path, params, body)

    def delete(self, path, params=None):
        return self.call("DELETE", path, params)

    def stream_json(self, method, path, params=None, body=None, headers=None):
        """Yield the JSON objects of a streamed response (pull, load, import: one per line)."""
        resp = self.open(method, path, params, body, headers, own_conn=True)
        buf = b""
        try:
            while chunk := resp.read1():
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
            if buf.strip():
                yield json.loads(buf)
        finally:
            resp.conn.close()

    def send(self, method, path, params=None, headers=None) -> "_Conn":
        """Send a body-less request on a fresh connection; ``receive`` reads the answer later.

        Lets ``run`` put its attach and wait requests on the wire together (one round trip).
        """
        conn = self._connect()
        self._send(conn, method, self.prefix + path + _query(params), dict(headers or {}), None)
        return conn

    def receive(self, conn: "_Conn", method="POST") -> Response:
        resp = Response(conn, method)
        if resp.status >= 400:
            e = _error_from(resp)
            conn.close()
            raise e
        return resp

    def hijack_send(self, path, params=None) -> "_Conn":
        """POST with ``Upgrade: tcp``; ``hijack_receive`` checks the 101."""
        return self.send("POST", path, params,
                         {"Content-Type": "text/plain", "Connection": "Upgrade", "Upgrade": "tcp"})

    def hijack_receive(self, conn: "_Conn") -> tuple[Socket, bytes]:
        """After ``101`` the socket is a raw byte pipe: returns it and the bytes read past the
        header block."""
        resp = self.receive(conn)
        if resp.status != 101:
            conn.close()
            raise APIError(resp.status, f"unable to upgrade to tcp, received {resp.status}")
        return conn.sock, conn.buf

    def hijack(self, path, params=None) -> tuple[Socket, bytes]:
        return self.hijack_receive(self.hijack_send(path, params))

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _error_from(resp: Response) -> APIError:
    body = resp.read()
    text = body.decode("utf-8", "replace").strip()
    msg = text
    if resp.getheader("Content-Type", "").startswith("application/json"):
        try:
            msg = json.loads(body).get("message", text)
        except (ValueError, AttributeError):
            pass
    return APIError(resp.status, msg or f"request returned {resp.status} {resp.reason}")
