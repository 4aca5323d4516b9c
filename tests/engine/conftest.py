"""Fixtures for engine tests: a private data-root/exec-root with busybox imported, and cleanup.

``roots`` gives short temp paths (unix socket paths are limited to 108 bytes). Teardown opens the
engine again and force-removes every container and volume, then kills (by PID, from our containers'
cgroups and our roots' conmon processes) whatever is left, unmounts what is left under the roots,
removes our cgroup dirs and the temp dir — even when the test failed.
"""

import asyncio
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import rootfs  # noqa: E402



def mounts_under(root: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        mps = [line.split()[4].encode().decode("unicode_escape") for line in f]
    return [m for m in mps if m == root or m.startswith(root.rstrip("/") + "/")]


def dockyard_cgroup_dirs() -> set[str]:
    """``.../dockyard/<id>`` dirs in every v1 controller and the v2 hierarchy."""
    found = set()
    for parent in ["/sys/fs/cgroup/dockyard"] + [os.path.join("/sys/fs/cgroup", c, "dockyard")
                                                  for c in os.listdir("/sys/fs/cgroup")]:
        if os.path.isdir(parent):
            found.update(os.path.join(parent, d) for d in os.listdir(parent)
                         if os.path.isdir(os.path.join(parent, d)))
    return found


@pytest.fixture(scope="session")
def busybox_bytes():
    return rootfs.make_rootfs_tar()


@dataclass
class Roots:
    base: str
    data: str
    exec: str
    seen: set

    def leaks(self) -> list[str]:
        """Mounts under the roots and cgroups of this test's containers that still exist."""
        out = [f"mount {m}" for m in mounts_under(self.base)]
        return out + [f"cgroup {c}" for c in dockyard_cgroup_dirs() if os.path.basename(c) in self.seen]

    async def open(self):
        from dockyard.engine import Engine

        eng = await Engine.open(self.data, self.exec)
        self.seen.update(eng._containers)
        return eng


async def _import(roots, tar_bytes):
    eng = await roots.open()
    try:
        await asyncio.to_thread(eng.images.import_rootfs, io.BytesIO(tar_bytes), "busybox:latest")
    finally:
        await eng.close()


async def _remove_everything(roots):
    eng = await roots.open()
    try:
        for c in list(eng._containers.values()):
            roots.seen.add(c.id)
            await eng.remove(c.id, force=True, volumes=True)
        for v in list(eng.volumes.list()):
            await eng.remove_volume(v.name, force=True)
    finally:
        await eng.close()


@pytest.fixture
def roots(busybox_bytes):
    if os.geteuid() != 0:
        pytest.skip("privileged: engine tests need root")
    base = tempfile.mkdtemp(prefix="dye-", dir="/tmp")
    r = Roots(base, os.path.join(base, "d"), os.path.join(base, "e"), set())
    try:
        asyncio.run(_import(r, busybox_bytes))
        yield r
    finally:
        try:
            asyncio.run(_remove_everything(r))
        finally:
            _scrub_host(r)


def _scrub_host(r: Roots):
    """Last resort after the engine's own cleanup: what this test may have leaked."""
    ids = set(r.seen)
    rt = os.path.join(r.exec, "runtime")
    if os.path.isdir(rt):
        ids.update(n for n in os.listdir(rt) if len(n) == 64)
    pids = set()
    for cg in dockyard_cgroup_dirs():
        if os.path.basename(cg) in ids:
            try:
                with open(os.path.join(cg, "cgroup.procs")) as f:
                    pids.update(int(p) for p in f.read().split())
            except OSError:
                pass
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if r.base.encode() in f.read():
                        pids.add(int(p))
            except OSError:
                pass
    pids.discard(os.getpid())
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for mp in sorted(mounts_under(r.base), key=lambda m: m.count("/"), reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    for cg in sorted(dockyard_cgroup_dirs(), key=len, reverse=True):
        if os.path.basename(cg) in ids:
            for _ in range(40):
                try:
                    os.rmdir(cg)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
    shutil.rmtree(r.base, ignore_errors=True)
