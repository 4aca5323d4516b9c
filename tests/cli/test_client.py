"""The CLI's own HTTP/1.1 client against a canned server on a unix socket (no daemon needed)."""

import json
import os
import socket
import threading

import pytest

from dockyard.cli.client import APIError, Client, DaemonUnavailable
from dockyard.cli.stream import Demux


class Canned:
    """Accepts connections; for each request replies with the next canned bytes, or calls it."""

    def __init__(self, path, replies):
        self.path, self.replies, self.requests, self.conns = path, list(replies), [], 0
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.replies:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        buf = b""
        with conn:
            while self.replies:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                headers = dict(ln.split(": ", 1) for ln in head.decode().split("\r\n")[1:])
                n = int(headers.get("Content-Length", 0))
                while len(buf) < n:
                    buf += conn.recv(65536)
                body, buf = buf[:n], buf[n:]
                self.requests.append((head.decode().split("\r\n")[0], headers, body))
                reply = self.replies.pop(0)
                if callable(reply):
                    reply(conn)
                    return
                conn.sendall(reply)

    def close(self):
        self.srv.close()


@pytest.fixture
def serve(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCKYARD_API_VERSION", raising=False)
    servers = []

    def make(*replies):
        s = Canned(str(tmp_path / f"s{len(servers)}.sock"), replies)
        servers.append(s)
        return s, Client("unix://" + s.path)
    yield make
    for s in servers:
        s.close()


def ok_json(obj, extra=b""):
    body = json.dumps(obj).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), extra, body)


def test_keep_alive_and_json(serve):
    s, c = serve(ok_json({"a": 1}), b"HTTP/1.1 204 No Content\r\n\r\n", ok_json([1, 2]))
    assert c.get("/x", {"all": 1, "n": None}) == {"a": 1}
    assert c.post("/y", body={"k": "v"}) is None
    assert c.get("/z") == [1, 2]
    assert s.conns == 1, "plain requests share one keep-alive connection"
    line, headers, body = s.requests[1]
    assert line == "POST /v1.44/y HTTP/1.1" and json.loads(body) == {"k": "v"}
    assert headers["Content-Type"] == "application/json"
    assert s.requests[0][0] == "GET /v1.44/x?all=1 HTTP/1.1"


def test_chunked_stream(serve):
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b'{"status":"a"}\n{"st', b'atus":"b"}\n'))
    _, c = serve(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + chunks + b"0\r\n\r\n")
    assert list(c.stream_json("POST", "/images/load")) == [{"status": "a"}, {"status": "b"}]


def test_errors_carry_the_daemon_message(serve):
    _, c = serve(b'HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 35\r\n\r\n'
                 b'{"message":"No such container: x"}\n',
                 b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!")
    with pytest.raises(APIError) as e:
        c.get("/containers/x/json")
    assert (e.value.status, e.value.message) == (404, "No such container: x")
    with pytest.raises(APIError) as e:
        c.get("/boom")
    assert e.value.message == "oops!"


def test_hijack_keeps_bytes_after_the_101(serve):
    frame = b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    _, c = serve(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n" + frame)
    sock, rest = c.hijack("/containers/x/attach", {"stream": 1})
    assert rest == frame
    sock.close()


def test_hijack_refused_is_an_error(serve):
    _, c = serve(b'HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: 23\r\n\r\n'
                 b'{"message":"not here"}\n')
    with pytest.raises(APIError) as e:
        c.hijack("/containers/x/attach")
    assert e.value.message == "not here"


def test_server_closing_an_idle_connection_is_retried(serve):
    # First connection answers once then closes; the client must reconnect transparently.
    def answer_then_close(conn):
        conn.sendall(ok_json({"n": 1}))
    s, c = serve(answer_then_close, ok_json({"n": 2}))
    assert c.get("/a") == {"n": 1}
    assert c.get("/b") == {"n": 2}
    assert s.conns == 2


def test_no_daemon():
    with pytest.raises(DaemonUnavailable) as e:
        Client("unix:///nonexistent/d.sock").get("/_ping")
    assert str(e.value).startswith("Cannot connect to the dockyard daemon at unix:///nonexistent/d.sock.")


def test_demux(tmp_path):
    out, err = os.pipe(), os.pipe()
    d = Demux(out[1], err[1])
    stream = b"\x01\x00\x00\x00\x00\x00\x00\x04out\n\x02\x00\x00\x00\x00\x00\x00\x04err\n\x01\x00\x00\x00\x00\x00\x00\x00"
    for i in range(len(stream)):  # byte by byte: frames split anywhere must reassemble
        d.feed(stream[i:i + 1])
    assert os.read(out[0], 100) == b"out\n" and os.read(err[0], 100) == b"err\n"
    with pytest.raises(APIError, match="error from daemon in stream: boom"):
        d.feed(b"\x03\x00\x00\x00\x00\x00\x00\x04boom")
    for fd in (*out, *err):
        os.close(fd)


def test_percent_encoding_matches_urllib():
    """client.py encodes paths and queries itself (urllib.parse costs start-up time): the same
    bytes as urllib.parse.quote / urlencode, for any text."""
    import random
    import urllib.parse

    from dockyard.cli.client import _query, quote

    rng = random.Random(7)
    alphabet = "az AZ09_.-~/:@?#&=+%!$'()*,;[]{}\"\\\tü€\U0001f600"
    samples = ["", "busybox:latest", "a b", "repo@sha256:ab", '{"label":{"a=b":true}}']
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20))) for _ in range(500)]
    for s in samples:
        assert quote(s) == urllib.parse.quote(s, safe="/:@"), s
        assert _query({"k": s, "l l": [s, 1, True]}) == "?" + urllib.parse.urlencode(
            [("k", s), ("l l", s), ("l l", "1"), ("l l", "1")]), s
