"""An in-memory stand-in for the engine, to test the HTTP layer (framing, routing, hijack, errors)
without containers. Tests only: the end-to-end tests in test_e2e.py use the real engine.

Its "containers" run a tiny script instead of a process: ``echo ARGS`` prints ARGS, ``cat`` echoes
stdin until EOF, ``sleep N`` waits, ``false`` exits 1; stderr gets ``err:ARGS`` for ``warn ARGS``.
"""

import asyncio
import hashlib
import io
import json
import os
import tarfile
import time

from dockyard import errdefs
from dockyard.engine import AttachSession, Container, LogEntry, Volume
from dockyard.images import Image

NOW = "2026-01-01T00:00:00.123456789Z"


class FakeImages:
    def __init__(self):
        self.images: dict[str, Image] = {}

    def resolve(self, ref):
        ref = ref.removeprefix("docker.io/library/")
        for img in self.images.values():
            if ref in (img.id, img.id[7:]) or (len(ref) >= 4 and img.id[7:].startswith(ref)):
                return img
            if ref in img.repo_tags or (":" not in ref and ref + ":latest" in img.repo_tags):
                return img
        raise errdefs.NotFound(f"No such image: {ref if ':' in ref else ref + ':latest'}")

    def list(self):
        return list(self.images.values())

    def tag(self, ref, new_ref):
        img = self.resolve(ref)
        for other in self.images.values():
            if new_ref in other.repo_tags:
                other.repo_tags.remove(new_ref)
        img.repo_tags.append(new_ref)

    def import_rootfs(self, f, ref, changes=(), message=""):
        h, n = hashlib.sha256(), 0
        while chunk := f.read(65536):
            h.update(chunk)
            n += len(chunk)
        if n == 0:
            raise errdefs.InvalidArgument("import: empty archive")
        cfg = {"architecture": "amd64", "os": "linux", "created": NOW, "config": {"Cmd": ["sh"]},
               "rootfs": {"type": "layers", "diff_ids": ["sha256:" + h.hexdigest()]},
               "history": [{"created": NOW, "comment": message}]}
        img = Image("sha256:" + hashlib.sha256(json.dumps(cfg).encode()).hexdigest(), cfg, [], [], None, n)
        self.images[img.id] = img
        if ref:
            self.tag(img.id, ref if ":" in ref else ref + ":latest")
        return img

    def save(self, refs, f, fmt="docker-archive"):
        with tarfile.open(fileobj=f, mode="w|") as tf:
            data = json.dumps([{"RepoTags": [r for r in refs]}]).encode()
            ti = tarfile.TarInfo("manifest.json")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
            big = b"x" * (3 << 20)  # big enough to need several pipe round trips
            ti = tarfile.TarInfo("blob")
            ti.size = len(big)
            tf.addfile(ti, io.BytesIO(big))

    def load(self, f, progress=None):
        with tarfile.open(fileobj=f, mode="r|") as tf:
            for m in tf:
                if m.name == "manifest.json":
                    return json.load(tf.extractfile(m))[0]["RepoTags"]
        raise errdefs.InvalidArgument("invalid archive: no manifest.json")

    def history(self, ref):
        img = self.resolve(ref)
        return [{"Id": img.id, "Created": 0, "CreatedBy": "", "Tags": img.repo_tags, "Size": img.size,
                 "Comment": ""}]


class _Session(AttachSession):
    def __init__(self, ctr):
        self.ctr = ctr
        self.q: asyncio.Queue = asyncio.Queue()
        ctr.subscribers.append(self.q)

    async def output(self):
        while True:
            item = await self.q.get()
            if item is None:
                return
            yield item

    async def write_stdin(self, data):
        self.ctr.stdin.put_nowait(data)

    async def close_stdin(self):
        self.ctr.stdin.put_nowait(None)

    async def close(self):
        if self.q in self.ctr.subscribers:
            self.ctr.subscribers.remove(self.q)


class FakeEngine:
    def __init__(self):
        self.images = FakeImages()
        self.ctrs: dict[str, Container] = {}
        self.volumes: dict[str, Volume] = {}
        self._n = 0

    # -- containers --------------------------------------------------------------------------
    def get(self, ref):
        ref = ref.lstrip("/") if not ref.startswith("/") or len(ref) > 1 else ref
        for c in self.ctrs.values():
            if ref in (c.id, c.name.lstrip("/")):
                return c
        hits = [c for c in self.ctrs.values() if c.id.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        raise errdefs.NotFound(f"No such container: {ref}")

    def list(self, all=False, filters=None, limit=-1):
        return sorted(self.ctrs.values(), key=lambda c: c.created, reverse=True)

    async def create_container(self, name, config, host_config, networking_config):
        img = self.images.resolve(config["Image"])
        self._n += 1
        cid = hashlib.sha256(f"ctr{self._n}{time.time()}".encode()).hexdigest()
        name = name or f"fake_{self._n}"
        if any(c.name == "/" + name for c in self.ctrs.values()):
            raise errdefs.AlreadyExists(f'Conflict. The container name "/{name}" is already in use')
        cmd = config.get("Cmd") or ["sh"]
        c = Container(cid, "/" + name, config["Image"], img.id, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{self._n:09d}Z", dict(config),
                      dict(host_config), dict(networking_config), path=cmd[0], args=cmd[1:])
        c.subscribers, c.stdin, c.log, c.done = [], asyncio.Queue(), [], asyncio.Event()
        self.ctrs[cid] = c
        return cid, []

    async def start(self, ref):
        c = self.get(ref)
        if c.state.running:
            raise errdefs.NotModified("container already running")
        if c.path == "nosuch":
            c.state.status, c.state.exit_code = "exited", 127
            c.done.set()  # like moby: a failed start of an AutoRemove container removes it
            if c.host_config.get("AutoRemove"):
                self.ctrs.pop(c.id, None)
            raise errdefs.InvalidArgument('exec: "nosuch": executable file not found in $PATH')
        c.state.status, c.state.pid = "running", os.getpid()
        c.task = asyncio.get_running_loop().create_task(self._run(c))

    async def _emit(self, c, stream, data):
        c.log.append(LogEntry(stream, data, time.time_ns()))
        for q in c.subscribers:
            q.put_nowait(("stdout" if c.config.get("Tty") else stream, data))

    async def _run(self, c):
        code = 0
        if c.path == "echo":
            await self._emit(c, "stdout", (" ".join(c.args) + "\n").encode())
        elif c.path == "warn":
            await self._emit(c, "stderr", ("err:" + " ".join(c.args) + "\n").encode())
        elif c.path == "cat":
            while (data := await c.stdin.get()) is not None:
                await self._emit(c, "stdout", data)
        elif c.path == "sleep":
            try:
                await asyncio.sleep(float(c.args[0]))
            except asyncio.CancelledError:
                code = 137
        elif c.path == "false":
            code = 1
        c.state.status, c.state.exit_code, c.state.pid = "exited", code, 0
        for q in c.subscribers:
            q.put_nowait(None)
        c.done.set()
        if c.host_config.get("AutoRemove"):
            self.ctrs.pop(c.id, None)

    async def stop(self, ref, timeout=None, signal=None):
        c = self.get(ref)
        if not c.state.running:
            raise errdefs.NotModified("not running")
        c.task.cancel()
        await c.done.wait()

    async def kill(self, ref, signal="KILL"):
        c = self.get(ref)
        if not c.state.running:
            raise errdefs.Conflict(f"container {c.id} is not running")
        c.task.cancel()
        await c.done.wait()

    async def restart(self, ref, timeout=None):
        c = self.get(ref)
        if c.state.running:
            await self.stop(ref)
        c.done.clear()
        await self.start(ref)

    async def remove(self, ref, force=False, volumes=False):
        c = self.get(ref)
        if c.state.running and not force:
            raise errdefs.Conflict(f'cannot remove container "{c.name}": container is running: stop the '
                                   "container before removing or force remove")
        if c.state.running:
            await self.kill(ref)
        self.ctrs.pop(c.id, None)

    async def wait(self, ref, condition="not-running"):
        c = self.get(ref)
        if condition == "not-running" and not c.state.running and c.state.status != "created":
            return c.state.exit_code
        await c.done.wait()
        return c.state.exit_code

    async def resize(self, ref, height, width):
        self.get(ref)

    def logs(self, ref, stdout=True, stderr=True, follow=False, since_ns=0, until_ns=0, tail=-1, batched=False):
        c = self.get(ref)

        async def gen():
            sent = 0
            while True:
                entries = c.log[sent:]
                sent = len(c.log)
                batch = [e for e in (entries[-tail:] if tail >= 0 and sent == len(entries) else entries)
                         if (e.stream == "stdout" and stdout) or (e.stream == "stderr" and stderr)]
                if batched:
                    if batch:
                        yield batch
                else:
                    for e in batch:
                        yield e
                if not follow or not c.state.running:
                    return
                await asyncio.sleep(0.01)

        return gen()

    async def attach(self, ref, stdin=False, stdout=True, stderr=True, logs=False, stream=True):
        return _Session(self.get(ref))

    async def rename(self, ref, new_name):
        self.get(ref).name = "/" + new_name

    async def remove_image(self, ref, force=False, noprune=False):
        img = self.images.resolve(ref)
        del self.images.images[img.id]
        return [{"Untagged": t} for t in img.repo_tags] + [{"Deleted": img.id}]

    async def prune_images(self, dangling_only=True):
        return [], 0

    # -- volumes -----------------------------------------------------------------------------
    async def create_volume(self, name=None, driver="local", driver_opts=None, labels=None):
        name = name or hashlib.sha256(str(time.time()).encode()).hexdigest()
        v = self.volumes.get(name) or Volume(name, driver, f"/fake/volumes/{name}/_data", "2026-01-01T00:00:00Z",
                                              labels or {}, driver_opts or {})
        self.volumes[name] = v
        return v

    def get_volume(self, name):
        if name not in self.volumes:
            raise errdefs.NotFound(f"get {name}: no such volume")
        return self.volumes[name]

    def list_volumes(self, filters=None):
        return list(self.volumes.values())

    async def remove_volume(self, name, force=False):
        self.get_volume(name)
        del self.volumes[name]

    async def prune_volumes(self, all=False):
        names = list(self.volumes)
        self.volumes.clear()
        return names, 0

    def info(self):
        return {"Containers": len(self.ctrs), "Images": len(self.images.images), "DockerRootDir": "/fake"}
