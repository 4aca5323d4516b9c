"""Helpers for the API tests: an in-process API server, and a ping over a unix socket."""

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import threading

DOCKER = "/usr/local/bin/docker" if os.access("/usr/local/bin/docker", os.X_OK) else shutil.which("docker")  # CLI 28, not Debian's 20.10


def ping(sock_path: str, timeout=2.0) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
    finally:
        s.close()


class InProcDaemon:
    """The real Server and router, in a thread with its own event loop, in front of the engine
    ``make_engine(dir)`` (an async factory) returns."""

    def __init__(self, make_engine):
        from dockyard.api import build_router
        from dockyard.api.server import Server

        self.dir = tempfile.mkdtemp(prefix="dyapi", dir="/tmp")
        self.sock = os.path.join(self.dir, "d.sock")
        self.host = "unix://" + self.sock
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def boot():
            self.engine = await make_engine(self.dir)
            self.server = Server(build_router(self.engine))
            await self.server.start_unix(self.sock)

        def main():
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(boot())
            finally:
                started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        assert started.wait(30) and hasattr(self, "server"), "in-process API server did not start"

    def close(self):
        async def down():
            await self.server.close()
            if hasattr(self.engine, "close"):
                await self.engine.close()

        fut = asyncio.run_coroutine_threadsafe(down(), self.loop)
        try:
            fut.result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            shutil.rmtree(self.dir, ignore_errors=True)

    def docker(self, *args, input=None, check=True, timeout=30):
        env = dict(os.environ, DOCKER_CONFIG=self.dir)  # no ~/.docker, no context surprises
        env.pop("DOCKER_HOST", None)
        r = subprocess.run([DOCKER, "-H", self.host, *args], input=input, capture_output=True,
                           timeout=timeout, env=env)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> {r.returncode}: {r.stderr.decode()}")
        return r

    def raw(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.sock)
        return s


