"""Fixtures for the registry tests: our registry server as a real subprocess, throwaway image stores.

``registry(**opts)`` (factory) starts ``python -m dockyard.registry.server`` on a free loopback port
with a temp root; returns an object with ``.url``, ``.host`` ("127.0.0.1:PORT"), ``.root``, ``.pid``.
Extra options: ``htpasswd=path``, ``token_auth=True``, ``tls=(cert, key)``. Every server is stopped by
PID and its root removed at teardown.
``make_store()`` (factory) -> a temp ImageStore, closed and removed at teardown.
``busybox_store`` -> (store, image) with the busybox rootfs imported as ``busybox:latest``.
"""

import io
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/rootfs.py

from rootfs import make_rootfs_tar  # noqa: E402

from dockyard.images.store import ImageStore  # noqa: E402


class Server:
    def __init__(self, proc, root, scheme):
        self.proc, self.root, self.pid = proc, root, proc.pid
        line = proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"registry did not start: {line!r} {proc.stderr.read()!r}")
        self.host = line.split()[-1]
        self.url = f"{scheme}://{self.host}"



def stop(proc):
    """Stop a process we started, by its PID."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for f in (proc.stdout, proc.stderr):
        if f:
            f.close()


@pytest.fixture
def registry():
    started: list[tuple[subprocess.Popen, str]] = []

    def start(htpasswd=None, token_auth=False, tls=None, root=None):
        root = root or tempfile.mkdtemp(prefix="dyreg-")
        cmd = [sys.executable, "-m", "dockyard.registry.server", "--addr", "127.0.0.1:0", "--root", root]
        if htpasswd:
            cmd += ["--htpasswd", htpasswd]
        if token_auth:
            cmd += ["--token-auth"]
        if tls:
            cmd += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append((proc, root))
        return Server(proc, root, "https" if tls else "http")

    yield start
    for proc, root in started:
        stop(proc)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_store():
    made = []

    def make():
        d = tempfile.mkdtemp(prefix="dyreg-store-")
        s = ImageStore(os.path.join(d, "images"))
        made.append((s, d))
        return s

    yield make
    for s, d in made:
        s.close()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_tar() -> bytes:
    return make_rootfs_tar()


@pytest.fixture
def busybox_store(make_store, busybox_tar):
    store = make_store()
    image = store.import_rootfs(io.BytesIO(busybox_tar), "busybox:latest", changes=['CMD ["sh"]'])
    return store, image


def store_is_empty(store) -> bool:
    """No image, no blob, no snapshot, nothing in tmp: what a failed pull must leave."""
    snaps = [n for n in os.listdir(store.snapshots) if n != "empty"]
    return not store.list() and not store.content.list() and not os.listdir(store.tmp) and not snaps
