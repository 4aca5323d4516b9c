"""kill -9 during load: reopening the store shows the old state or the new one, never a half image."""

import io
import os
import signal
import subprocess
import sys

import pytest

from dockyard.images.store import ImageStore
from .test_store import LAYER2, legacy_archive

CHILD = r"""
import os, sys, time
from dockyard.images import archive, store as store_mod
root, path, point = sys.argv[1:4]

def stop_here():
    print("ready", flush=True)
    time.sleep(120)

class Slow:
    # Stops after half of the archive was read: the kill lands in the spooling phase.
    def __init__(self, f): self.f, self.n, self.half = f, 0, os.path.getsize(path) // 2
    def read(self, n=-1):
        if self.n >= self.half: stop_here()
        data = self.f.read(n if 0 < n < 65536 else 65536)
        self.n += len(data)
        return data

apply_layer, unpack, commit = archive.apply_layer, store_mod.ImageStore._unpack, store_mod.ImageStore._commit_images
if point == "unpack":  # half-way through writing the first snapshot
    class Half(Slow):
        def __init__(self, f): self.f, self.n, self.half = f, 0, 1 << 20
    archive.apply_layer = lambda f, dest, overlay=True: apply_layer(Half(f), dest, overlay)
if point == "snapshot":  # first snapshot committed, image not
    def unpack_then_stop(self, *a):
        n = unpack(self, *a)
        stop_here()
    store_mod.ImageStore._unpack = unpack_then_stop
if point == "precommit":
    store_mod.ImageStore._commit_images = lambda self, p: stop_here()
if point == "postcommit":
    def commit_then_stop(self, p):
        commit(self, p)
        stop_here()
    store_mod.ImageStore._commit_images = commit_then_stop

s = store_mod.ImageStore(root)
with open(path, "rb") as f:
    s.load(Slow(f) if point == "spool" else f)
print("finished", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("point", ["spool", "unpack", "snapshot", "precommit", "postcommit"])
def test_kill9_during_load(tmpdir_clean, busybox_tar, point):
    data, _ = legacy_archive([busybox_tar, LAYER2], ["crash:1"])
    path = os.path.join(tmpdir_clean, "archive.tar")
    with open(path, "wb") as f:
        f.write(data)
    root = os.path.join(tmpdir_clean, "images")
    child = subprocess.Popen([sys.executable, "-c", CHILD, root, path, point], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    store = ImageStore(root)
    try:
        assert os.listdir(store.tmp) == []
        if point == "postcommit":
            img = store.resolve("crash:1")
            (m,) = store.prepare_rootfs("k", img.id)
            assert len(dict(o.split("=", 1) for o in m.options)["lowerdir"].split(":")) == 2
            store.remove_rootfs("k")
        else:
            assert store.list() == []
            assert sorted(os.listdir(store.snapshots)) == ["empty"]
        # The store is usable: the same load now completes.
        assert store.load(io.BytesIO(data)) == ["crash:1"]
        assert os.path.isfile(os.path.join(store.snapshots, "1", "fs", "bin", "busybox")) or point == "postcommit"
    finally:
        store.close()
