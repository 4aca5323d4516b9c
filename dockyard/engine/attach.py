"""Attach sessions: a client's view of a container's stdio through conmon's attach socket.

conmon's attach socket is SOCK_SEQPACKET: each message it sends is one byte of stream id (2 stdout,
3 stderr) followed by the data; what we send is raw stdin. conmon only forwards output to clients
connected at that moment, so a session made before start (``docker run`` attaches, then starts) is
connected by the engine between ``runtime.create`` and ``runtime.start``: the user process has not
exec'd yet, so nothing it writes can be missed. Stdin written before the connection is buffered.
"""

import asyncio
import socket

from dockyard.engine import AttachSession

_STREAMS = {2: "stdout", 3: "stderr"}
_BUF = 8192 + 1  # conmon's STDIO_BUF_SIZE plus the stream byte


class Session(AttachSession):
    def __init__(self, stdin: bool, stdout: bool, stderr: bool, backlog=()):
        self.want = {"stdout": stdout, "stderr": stderr}
        self.stdin = stdin
        self._queue: asyncio.Queue = asyncio.Queue()
        self._backlog = list(backlog)  # (stream, bytes) from the log, emitted first (logs=True)
        self._sock: socket.socket | None = None
        self._pending_stdin: list[bytes] = []
        self._stdin_closed = False
        self._done = False
        self._exited: asyncio.Event | None = None
        self._end_task = None
        self._detached = False
        self.on_close = None  # set by the engine: unregisters the session

    # -- engine side -------------------------------------------------------------------------
    def connect(self, s: socket.socket, exited: asyncio.Event | None = None):
        """Take over a connected attach socket (``runtime.open_attach``), from the loop thread.

        ``exited`` is set once the engine recorded the run's exit: the output ends only then, so a
        client that removes the container right after its output ended does not find it running.
        """
        if self._done:  # the client went away before the container started
            s.close()
            return
        s.setblocking(False)
        self._sock = s
        self._exited = exited
        asyncio.get_running_loop().add_reader(s.fileno(), self._readable)
        for data in self._pending_stdin:
            self._send(data)
        self._pending_stdin.clear()
        if self._stdin_closed:
            self._shutdown_write()

    def finish(self):
        """No more output will come (the container exited, or never started)."""
        if self._sock is None and not self._done:
            self._done = True
            self._queue.put_nowait(None)

    def _readable(self):
        try:
            msg = self._sock.recv(_BUF)
        except BlockingIOError:
            return
        except OSError:
            msg = b""
        if not msg or self._detached:
            if msg:
                return  # detached: output is dropped until conmon closes the socket
            self._drop_socket()
            self._done = True
            self._end_task = asyncio.get_running_loop().create_task(self._end_after_exit())
            return
        stream = _STREAMS.get(msg[0])
        if stream and self.want[stream] and len(msg) > 1:
            self._queue.put_nowait((stream, msg[1:]))

    async def _end_after_exit(self):
        if self._exited is not None:
            try:
                await asyncio.wait_for(self._exited.wait(), 10)
            except asyncio.TimeoutError:
                pass  # conmon closed the socket but the process lives on (stdio closed): end anyway
        self._queue.put_nowait(None)

    def _drop_socket(self):
        if self._sock is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            except RuntimeError:
                pass
            self._sock.close()
            self._sock = None

    def _send(self, data: bytes):
        # Seqpacket messages must fit conmon's read buffer; larger writes are split.
        for i in range(0, len(data), 8192):
            try:
                self._sock.send(data[i:i + 8192])
            except BlockingIOError:
                # The socket buffer is full: blocking briefly is better than losing stdin.
                self._sock.setblocking(True)
                try:
                    self._sock.send(data[i:i + 8192])
                finally:
                    self._sock.setblocking(False)

    def _shutdown_write(self):
        try:
            self._sock.shutdown(socket.SHUT_WR)  # conmon closes the container's stdin on EOF
        except OSError:
            pass

    # -- client side (AttachSession) ---------------------------------------------------------
    async def output(self):
        for item in self._backlog:
            yield item
        self._backlog = []
        while True:
            item = await self._queue.get()
            if item is None:
                return
            yield item

    async def write_stdin(self, data: bytes) -> None:
        if not self.stdin or self._stdin_closed or not data:
            return
        if self._sock is None:
            self._pending_stdin.append(bytes(data))
        else:
            self._send(data)

    async def close_stdin(self) -> None:
        if self._stdin_closed:
            return
        self._stdin_closed = True
        if self._sock is not None:
            self._shutdown_write()

    async def detach(self) -> None:
        # conmon closes the container's stdin when the last attach socket of a StdinOnce container
        # closes; a detach must not, so the socket stays open (its output dropped) until conmon
        # closes it at exit.
        if self._sock is not None:
            self._detached = True
        await self.close()

    async def close(self) -> None:
        if not self._detached:
            self._drop_socket()
        if not self._done:
            self._done = True
            self._queue.put_nowait(None)
        if self.on_close:
            self.on_close(self)
