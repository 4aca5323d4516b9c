"""Attached I/O: demultiplexing Docker's 8-byte-header frames, the hijacked attach session of
``run``/``start -a`` (stdin copy, raw terminal, resize on SIGWINCH, signal forwarding).

Output goes straight to file descriptors 1 and 2 with os.write: container output is bytes, and
unbuffered writes keep stdout/stderr interleaving as the container produced it.
"""

import _signal  # the C module: signal.py builds enums on import (~0.6 ms of run's start-up)
import json
import os
import struct
import sys
from _socket import SHUT_WR  # the C module, as in client.py

from dockyard.cli.client import APIError, Client


def write_all(fd: int, data: bytes):
    """Write everything; BrokenPipeError (``| head`` went away) propagates and ends the command
    (click exits 1 quietly on EPIPE) instead of pumping output nobody reads."""
    while data:
        n = os.write(fd, data)
        data = data[n:]


class Demux:
    """Feed it bytes of a multiplexed stream; it writes each frame's payload to stdout/stderr."""

    def __init__(self, out_fd=1, err_fd=2):
        self.fds = {0: out_fd, 1: out_fd, 2: err_fd}
        self.buf = b""

    def feed(self, data: bytes):
        self.buf += data
        while len(self.buf) >= 8:
            kind, size = struct.unpack(">BxxxL", self.buf[:8])
            if len(self.buf) < 8 + size:
                return
            payload, self.buf = self.buf[8:8 + size], self.buf[8 + size:]
            if kind == 3:
                raise APIError(500, "error from daemon in stream: " + payload.decode("utf-8", "replace"))
            if kind not in self.fds:
                raise APIError(500, "Unrecognized input header: %d" % kind)
            write_all(self.fds[kind], payload)


def copy_response(resp, tty: bool):
    """Copy a logs response body (chunked, possibly endless with -f) to stdout/stderr."""
    demux = None if tty else Demux()
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            return
        if demux is None:
            write_all(1, chunk)
        else:
            demux.feed(chunk)


def start_thread(fn, *args) -> None:
    """A daemon thread (the command exits without joining it), through the C module: threading.py
    costs ~2.5 ms of start-up that `exec CTR true` and `run` without -i never use."""
    import _thread

    _thread.start_new_thread(fn, args)


class RawTerminal:
    """Put our terminal in raw mode for ``-it`` (keys go to the container's tty unprocessed)."""

    def __init__(self, fd: int):
        import termios
        import tty

        self.fd = fd
        self.termios = termios
        self.saved = termios.tcgetattr(fd)
        tty.setraw(fd)

    def restore(self):
        self.termios.tcsetattr(self.fd, self.termios.TCSADRAIN, self.saved)


def terminal_size() -> tuple[int, int] | None:
    for fd in (1, 0, 2):
        try:
            s = os.get_terminal_size(fd)
            return s.lines, s.columns
        except OSError:
            continue
    return None


def resize(client: Client, cid: str, kind: str = "containers"):
    """Send our terminal's size (``kind`` "exec" for an exec session)."""
    size = terminal_size()
    if size:
        try:
            Client(client.host).post(f"/{kind}/{cid}/resize", {"h": size[0], "w": size[1]})
        except Exception:
            pass  # resizing is best effort, as in docker ("failed to resize tty")


class Attached:
    """One attach session: created before start so no output is lost, pumped after start."""

    def __init__(self, client: Client, cid: str, tty: bool, stdin: bool, stdout=True, stderr=True):
        """Sends the attach request; ``connected()`` waits for the 101 (so the caller can put
        its wait request on the wire in between)."""
        self.client, self.cid, self.tty, self.stdin = client, cid, tty, stdin
        params = {"stream": 1, "stdin": 1 if stdin else None, "stdout": 1 if stdout else None,
                  "stderr": 1 if stderr else None}
        self._pending = client.hijack_send(f"/containers/{cid}/attach", params)
        self.raw = None

    @classmethod
    def exec_start(cls, client: Client, eid: str, tty: bool, stdin: bool, console_size=None):
        """``POST /exec/<id>/start`` hijacked, with its JSON body (the process starts now)."""
        self = cls.__new__(cls)
        self.client, self.cid, self.tty, self.stdin, self.raw = client, eid, tty, stdin, None
        body = {"Detach": False, "Tty": tty, **({"ConsoleSize": list(console_size)} if console_size else {})}
        conn = client._connect()
        client._send(conn, "POST", client.prefix + f"/exec/{eid}/start",
                     {"Content-Type": "application/json", "Connection": "Upgrade", "Upgrade": "tcp"},
                     json.dumps(body).encode())
        self._pending = conn
        return self.connected()

    def connected(self):
        self.sock, self.leftover = self.client.hijack_receive(self._pending)
        if not self.stdin:
            # Nothing to send: say so now (the server closes the process's stdin only if asked).
            self.sock.shutdown(SHUT_WR)
        return self

    def _copy_stdin(self):
        try:
            while True:
                data = os.read(0, 65536)
                if not data:
                    break
                self.sock.sendall(data)
        except OSError:
            pass
        finally:
            try:
                self.sock.shutdown(SHUT_WR)
            except OSError:
                pass

    def run(self):
        """Pump until the server closes the stream (the process exited and output drained)."""
        if self.tty and self.stdin and os.isatty(0):
            self.raw = RawTerminal(0)
        try:
            if self.stdin:
                start_thread(self._copy_stdin)
            demux = None if self.tty else Demux()
            data = self.leftover
            while True:
                if data:
                    if demux is None:
                        write_all(1, data)
                    else:
                        demux.feed(data)
                try:
                    data = self.sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    break
        finally:
            if self.raw:
                self.raw.restore()
            self.sock.close()


def forward_signals(client: Client, cid: str):
    """Attached without a tty, ^C and SIGTERM go to the container (docker's ForwardAllSignals)."""

    names = {getattr(_signal, n): n for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")}

    def handler(signum, _frame):
        start_thread(_kill, client.host, cid, names[signum])

    for sig in names:
        _signal.signal(sig, handler)


def _kill(host, cid, name):
    try:
        Client(host).post(f"/containers/{cid}/kill", {"signal": name})
    except Exception:
        pass


def watch_winch(client: Client, cid: str, kind: str = "containers"):
    _signal.signal(_signal.SIGWINCH, lambda *_: start_thread(resize, client, cid, kind))


def send_wait(client: Client, cid: str, condition: str):
    """POST /wait, to be sent before start; the server answers headers at once, the body at exit."""
    return client.send("POST", f"/containers/{cid}/wait", {"condition": condition})


def open_wait(client: Client, cid: str, condition: str):
    return client.receive(send_wait(client, cid, condition))


def wait_status(resp) -> int:
    """The exit status from a wait response: StatusCode, or 125 with the error printed."""
    try:
        body = json.loads(resp.read() or b"{}")
    except (ValueError, OSError) as e:
        print(f"dockyard: error waiting for container: {e}", file=sys.stderr)
        return 125
    err = body.get("Error")
    if err and err.get("Message"):
        print(f"dockyard: error waiting for container: {err['Message']}", file=sys.stderr)
        return 125
    return int(body.get("StatusCode", 0))
