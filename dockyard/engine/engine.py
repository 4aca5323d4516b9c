"""The Engine: containers' state machines over the image store and the runtime.

Each container has one asyncio lock serializing its transitions (start, exit handling, remove,
rename); waiting for an exit never holds it, so stop/kill/remove(force) can wait for the exit
handler, which needs the lock. Commit points: create = the row insert; start = recording
``running`` (before it, any failure undoes runtime state and mounts, and the container stays
``created`` with State.Error set, as in Docker); exit = recording ``exited``; remove = the row delete.
Everything between a crash and the next commit point is finished or undone by ``_reconcile`` on open.
Networking (``engine.networking``) sits inside start: endpoints and published ports are made between
``runtime.create`` and ``runtime.start`` and dropped by ``_teardown``, like the rootfs mount.

Exits are observed level-triggered: a pidfd on conmon (it outlives the daemon and exits right after
the container, having written the exit code) becomes readable; the handler then asks the runtime for
the exit status. After a daemon restart the same pidfds are opened again from ``runtime.monitor_pid``.

The exit handler also applies the restart policy (``engine.restart`` decides, the engine schedules):
``restarting`` is recorded in the same write as the exit, so a daemon that dies during the back-off
restarts the container when it comes back. Every transition emits its Docker event (``engine.events``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import platform
import shutil
import signal as _signal
import time

from dockyard import errdefs
from dockyard.engine import (CREATED, DEAD, EXITED, PAUSED, REMOVING, RESTARTING, RUNNING,
                             Container, State)
from dockyard.engine import config as cfgplan
from dockyard.engine import names, networking, ocispec, restart as restartpolicy, sysmount
from dockyard.engine import stats as statsmod
from dockyard.engine.attach import Session
from dockyard.engine.events import EventingImages, EventLog
from dockyard.engine.copy import CopyOps
from dockyard.engine.execs import ExecOps
from dockyard.engine.health import HealthOps, validate as validate_health
from dockyard.engine.layers import LayerOps
from dockyard.engine.logs import LogRotator, plan_of, read_log_batches, read_logs
from dockyard.engine.state import StateDB
from dockyard.engine.volumes import VolumeStore, validate_volume_name

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(ns: int | None = None) -> str:
    """Go's RFC3339Nano in UTC (trailing zeros of the fraction trimmed, as Go does)."""
    ns = time.time_ns() if ns is None else ns
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000))
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else base + "Z"


def rfc3339_ns(s: str) -> int:
    """Unix ns of ``rfc3339``'s output (0 for Go's zero time or junk)."""
    import calendar

    try:
        base, _, frac = s.rstrip("Z").partition(".")
        sec = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
        return max(0, sec * 1_000_000_000 + int((frac + "000000000")[:9]))
    except (ValueError, OverflowError):
        return 0


class Engine(ExecOps, CopyOps, LayerOps, HealthOps):
    def __init__(self, data_root, exec_root, images, runtime, db):
        self.data_root, self.exec_root = data_root, exec_root
        self.images, self.runtime, self._db = images, runtime, db
        self.volumes = VolumeStore(os.path.join(data_root, "volumes"), db)
        self._containers: dict[str, Container] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._watches: dict[str, int] = {}  # cid -> conmon pidfd
        self._exited: dict[str, asyncio.Event] = {}  # set once the current run's exit is recorded
        self._exit_waiters: dict[str, list[asyncio.Future]] = {}  # next-exit: any exit
        self._stop_waiters: dict[str, list[asyncio.Future]] = {}  # not-running: not when it restarts
        self._removed_waiters: dict[str, list[asyncio.Future]] = {}
        self._sessions: dict[str, list[Session]] = {}
        self._stats_last: dict[str, tuple[str, dict]] = {}  # cid -> (StartedAt, last sample's cpu)
        self._stats_cgroups: dict[str, tuple] = {}  # cid -> (StartedAt, its cgroup)
        self._creating: dict[str, str] = {}  # name -> ID of a create in progress (names are unique)
        self._tasks: set[asyncio.Task] = set()
        self._restart_tasks: dict[str, asyncio.Task] = {}  # cid -> pending restart (in its back-off sleep)
        self._restart_delay: dict[str, float] = {}  # cid -> last back-off delay (s)
        self._rotator = None
        self.nm = None  # dockyard.network.NetworkManager (None: no bridge networking)
        self.dns = None
        self._init_execs()
        self._init_health()
        self.events = EventLog()

    # ---- open / close ------------------------------------------------------------------------
    @classmethod
    async def open(cls, data_root: str, exec_root: str, *, images=None, runtime=None, network=False,
                   bip=None, default_pools=None) -> "Engine":
        """Open (creating) the roots and reconcile; ``images``/``runtime`` override the defaults."""
        data_root, exec_root = os.path.abspath(data_root), os.path.abspath(exec_root)
        for d in (data_root, os.path.join(data_root, "containers"), exec_root):
            os.makedirs(d, mode=0o710, exist_ok=True)
        if images is None:
            from dockyard.images import ImageStore
            images = await asyncio.to_thread(ImageStore, os.path.join(data_root, "images"))
        if runtime is None:
            from dockyard.runtime import Runtime
            runtime = await asyncio.to_thread(Runtime, os.path.join(exec_root, "runtime"))
        db = await asyncio.to_thread(StateDB, os.path.join(data_root, "engine.db"))
        eng = cls(data_root, exec_root, images, runtime, db)
        eng.images = EventingImages(images, eng.events, asyncio.get_running_loop())
        if network:
            from dockyard.network import NetworkManager
            if not bip:
                bip = await asyncio.to_thread(_free_bip, default_pools)
            eng.nm = await asyncio.to_thread(NetworkManager, os.path.join(data_root, "network"), exec_root,
                                             bip=bip, default_pools=default_pools)
        await eng._reconcile()
        if eng.nm:
            await eng._reconcile_network()
        eng._restart_on_boot()
        eng._rotator = LogRotator(eng)
        return eng

    async def close(self):
        """Stop watching; containers keep running (conmon holds them) and are re-adopted on open."""
        if self._rotator:
            self._rotator.stop()
        loop = asyncio.get_running_loop()
        for cid, fd in list(self._watches.items()):
            loop.remove_reader(fd)
            os.close(fd)
        self._watches.clear()
        self._close_execs()
        for cid in list(self._health_tasks):
            self._stop_health(cid)
        for t in list(self._tasks):
            t.cancel()
        for sessions in self._sessions.values():
            for s in list(sessions):
                await s.close()
        if self.dns:
            await self.dns.close()
        if self.nm:
            await asyncio.to_thread(self._close_network)
        self._db.close()

    async def _reconcile(self):
        rt_ids = set(await asyncio.to_thread(self.runtime.list))
        for c in self._db.containers():
            self._containers[c.id] = c
            self._locks[c.id] = asyncio.Lock()
        for c in list(self._containers.values()):
            if c.state.status == REMOVING:
                await self._remove_now(c, volumes=False)
            elif c.state.status == RESTARTING:
                pass  # torn down before it was recorded; _restart_on_boot starts it again
            elif c.state.running:
                mpid = await asyncio.to_thread(self.runtime.monitor_pid, c.id)
                if mpid:
                    self._exited[c.id] = asyncio.Event()
                    self._watch(c.id, mpid)
                    if c.id in self._watches:
                        self._start_health(c)
                else:  # exited while we were away: conmon recorded the code
                    await self._handle_exit(c.id)
            elif c.state.status == EXITED and c.host_config.get("AutoRemove"):
                await self._remove_now(c, volumes=True)  # exit recorded, removal not yet
            elif c.id in rt_ids:  # crashed between runtime.create and the start commit point
                await asyncio.to_thread(self._teardown, c)
            else:
                await asyncio.to_thread(sysmount.unmount, c.rootfs)
        for cid in rt_ids - set(self._containers):  # runtime state of a container with no row
            await asyncio.to_thread(self.runtime.delete, cid, True)
        cdir = os.path.join(self.data_root, "containers")
        for cid in os.listdir(cdir):  # bundles whose create never reached its commit point
            if cid not in self._containers:
                await asyncio.to_thread(self._remove_bundle, os.path.join(cdir, cid), cid)

    async def _reconcile_network(self):
        """After the containers' reconcile: make the kernel match the network store, drop endpoints
        of containers that are not running (exited while we were away, or gone), refresh the
        mirrored settings, and serve DNS on every user network."""
        from dockyard.network import DnsServer

        await asyncio.to_thread(self.nm.reconcile)
        running = {c.id for c in self._containers.values() if c.state.running}
        for ep in await asyncio.to_thread(self.nm.endpoints):
            if ep.container_id not in running:
                await asyncio.to_thread(self._release_network, ep.container_id)
        for c in self._containers.values():
            if c.state.running and networking.joins_networks(networking.network_mode(c.host_config)):
                c.network_settings = await asyncio.to_thread(networking.settings, self.nm, c)
                await asyncio.to_thread(self._db.update_container, c)
        self.dns = DnsServer(self.nm)
        await self.dns.sync()

    def _close_network(self):
        """With containers on the network, its kernel state stays (they keep running and the next
        daemon re-adopts them). With none, remove our bridges and nft tables so a stopped daemon
        leaves nothing on the host; the next open's reconcile recreates the user networks' bridges."""
        try:
            if not self.nm.endpoints():
                self.nm.teardown()
        finally:
            self.nm.close()

    # ---- lookups ----------------------------------------------------------------------------
    def get(self, ref: str) -> Container:
        ref = ref or ""
        c = self._containers.get(ref)
        if c:
            return c
        name = ref if ref.startswith("/") else "/" + ref
        for c in self._containers.values():
            if c.name == name:
                return c
        if ref:
            found = [c for c in self._containers.values() if c.id.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise errdefs.InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise errdefs.NotFound(f"No such container: {ref}")

    def list(self, all: bool = False, filters: dict | None = None, limit: int = -1) -> list[Container]:  # noqa: A002
        has_limit = limit is not None and limit > 0  # Docker: a limit (--last N) implies all
        out = [c for c in self._containers.values() if all or has_limit or c.state.running]
        out = [c for c in out if _matches(c, filters or {}, self)]
        out.sort(key=lambda c: c.created, reverse=True)
        return out[:limit] if has_limit else out

    def _taken(self, name: str) -> bool:
        return name in self._creating or any(c.name == name for c in self._containers.values())

    def _owner_of(self, name: str) -> str:
        return self._creating.get(name) or next((c.id for c in self._containers.values() if c.name == name), "")

    # ---- create -----------------------------------------------------------------------------
    async def create_container(self, name, config, host_config=None, networking_config=None):
        config = dict(config or {})
        image_ref = config.get("Image") or ""
        if not image_ref:
            raise errdefs.InvalidArgument("config cannot be empty in order to create a container")
        if name:
            name = names.normalize(name)
            if self._taken(name):
                raise names.conflict(name, self._owner_of(name))
        else:
            name = "/" + names.random_name(self._taken)
        # The name is ours from here (no await in between): a concurrent create sees it taken.
        cid = names.new_id()
        self._creating[name] = cid
        try:
            return await self._create_named(name, cid, image_ref, config, host_config, networking_config)
        finally:
            del self._creating[name]

    async def _create_named(self, name, cid, image_ref, config, host_config, networking_config):
        image = await asyncio.to_thread(self.images.resolve, image_ref)
        merged = cfgplan.merge_config(config, (image.config or {}).get("config") or {})
        validate_health(merged.get("Healthcheck"))
        hc = cfgplan.fill_host_config(host_config)
        networking_config = await self._check_network_mode(hc, dict(networking_config or {}))
        mounts = cfgplan.plan_mounts(hc, merged.get("Volumes"))
        warnings = []
        if hc.get("MemorySwap") and not hc.get("Memory") and hc["MemorySwap"] != -1:
            raise errdefs.InvalidArgument(
                "You should always set the Memory limit when using Memoryswap limit, see usage.")
        for m in mounts:
            if m["Type"] == "volume":
                if not m["Name"]:
                    m["Name"], m["Anonymous"] = names.new_id(), True
                elif not self.volumes.exists(m["Name"]):
                    validate_volume_name(m["Name"])  # before the commit point: leave nothing behind
            elif m["Type"] == "bind" and not m.pop("CreateSource") and not os.path.exists(m["Source"]):
                raise errdefs.InvalidArgument(
                    f'invalid mount config for type "bind": bind source path does not exist: {m["Source"]}')
        bundle = os.path.join(self.data_root, "containers", cid)
        args = list(merged.get("Entrypoint") or []) + list(merged.get("Cmd") or [])
        if not merged.get("Hostname"):
            merged["Hostname"] = platform.node() if hc["NetworkMode"] == "host" else cid[:12]
        merged["Image"] = image_ref
        c = Container(id=cid, name=name, image=image_ref, image_id=image.id, created=rfc3339(),
                      config=merged, host_config=hc, networking_config=dict(networking_config or {}),
                      path=args[0], args=args[1:], mounts=docker_mounts(mounts), mount_plan=mounts,
                      log_path=os.path.join(bundle, cid + "-json.log"), bundle=bundle,
                      rootfs=os.path.join(bundle, "rootfs"))
        networking.check_create(c, warnings)
        await asyncio.to_thread(self._db.insert_container, c)  # commit point
        self._containers[cid] = c
        self._locks[cid] = asyncio.Lock()
        try:
            await asyncio.to_thread(self._make_bundle, c)
        except BaseException:
            await self._remove_now(c, volumes=True)
            raise
        self._cev(c, "create")
        return cid, warnings

    async def _check_network_mode(self, hc: dict, ncfg: dict) -> dict:
        """Resolve NetworkMode (a user network by name or ID becomes its name) and the endpoints
        asked for; NotFound for unknown networks or containers. Returns the NetworkingConfig."""
        mode = networking.network_mode(hc)
        eps = dict(ncfg.get("EndpointsConfig") or {})
        if "default" in eps:
            eps.setdefault("bridge", eps.pop("default"))
        if mode.startswith("container:"):
            self.get(mode.split(":", 1)[1])
            eps = {}
        elif mode in ("host", "none") or self.nm is None:
            if mode not in ("host", "none", "bridge"):
                raise errdefs.NotFound(f"network {mode} not found")
            eps = {mode: eps.get(mode) or {}}
        else:
            resolved = {}
            for ref in [mode] + [k for k in eps if k != mode]:
                n = await asyncio.to_thread(self.nm.get, ref)
                if n.name in ("host", "none") and ref != mode:
                    raise errdefs.InvalidArgument(f"container cannot be connected to {n.name} and other networks")
                resolved[n.name] = dict(eps.get(ref) or {})
            mode = next(iter(resolved))
            eps = resolved
        hc["NetworkMode"] = mode
        return dict(ncfg, EndpointsConfig=eps)

    def _make_bundle(self, c: Container):
        os.makedirs(c.rootfs, mode=0o700, exist_ok=True)
        self._ensure_volumes(c)

    def _ensure_volumes(self, c: Container) -> dict:
        """Create the container's volumes that do not exist (anonymous ones labelled as such);
        returns name -> host _data path. Called at create and again at start (a volume removed
        while the container was stopped comes back, as in Docker)."""
        paths = {}
        for m in c.mount_plan:
            if m["Type"] != "volume":
                continue
            v = self.volumes.create(m["Name"], labels=m.get("Labels"), anonymous=bool(m.get("Anonymous")))
            m["Source"] = v.mountpoint
            paths[v.name] = v.mountpoint
        c.mounts = docker_mounts(c.mount_plan)
        return paths

    # ---- start ------------------------------------------------------------------------------
    async def start(self, ref: str):
        c = self.get(ref)
        if not c.state.running:
            # A start by the user: a fresh restart history, and no longer "stopped by the user".
            c.restart_count, c.manually_stopped = 0, False
            self._restart_delay.pop(c.id, None)
        try:
            await self._start(c)
        except errdefs.NotModified:
            raise
        except BaseException:
            # Docker removes an AutoRemove container whose start failed; `docker run --rm` waits
            # for exactly that (wait?condition=removed) before it reports the error.
            if c.host_config.get("AutoRemove") and not c.state.running and c.id in self._containers:
                async with self._locks[c.id]:
                    await self._remove_now(c, volumes=True)
            raise

    async def _start(self, c: Container, restarting: bool = False):
        async with self._locks[c.id]:
            c = self.get(c.id)
            if c.state.running and not (restarting and c.state.status == RESTARTING):
                raise errdefs.NotModified(f"container {c.id} is already running")
            if c.state.status in (REMOVING, DEAD):
                raise errdefs.Conflict(f"cannot start a container marked for removal: {c.id}")
            self._exited[c.id] = asyncio.Event()
            try:
                created = await asyncio.to_thread(self._create_in_runtime, c)
                self._watch(c.id, created.monitor_pid)
                self._connect_sessions(c)
                size = c.host_config.get("ConsoleSize") or [0, 0]
                if c.config.get("Tty") and len(size) == 2 and all(size):
                    # The size the client asked for at create, set before the process runs (the
                    # CLI's own resize comes after start, too late for a quick `stty size`).
                    await asyncio.to_thread(self.runtime.resize, c.id, int(size[0]), int(size[1]))
                started_ns = time.time_ns()  # before: a fast process may exit before start returns
                await asyncio.to_thread(self.runtime.start, c.id)
            except BaseException as e:
                self._unwatch(c.id)
                await asyncio.to_thread(self._teardown, c)
                msg = str(e) if isinstance(e, errdefs.DockyardError) else f"{type(e).__name__}: {e}"
                c.state.error = msg
                c.state.exit_code = _start_exit_code(msg)
                await asyncio.to_thread(self._db.update_container, c)
                self._finish_sessions(c.id)
                self._exited.pop(c.id).set()
                if isinstance(e, errdefs.DockyardError):
                    raise
                raise errdefs.Internal(msg) from e
            c.state = State(status=RUNNING, pid=created.pid, started_at=rfc3339(started_ns))
            await asyncio.to_thread(self._db.update_container, c)  # commit point
            for m in c.mount_plan:
                if m["Type"] == "volume":
                    self.events.emit("volume", "mount", m["Name"], {
                        "container": c.id, "destination": m["Destination"], "driver": "local",
                        "propagation": "", "read/write": str(not m.get("ReadOnly", False)).lower()})
            self._network_events(c, "connect", (c.network_settings or {}).get("Networks"))
            self._cev(c, "start")
            self._start_health(c)
            if self._rotator:
                self._rotator.track(c)

    def _create_in_runtime(self, c: Container):
        """Mount the rootfs, write the bundle, and have the runtime create the container (thread)."""
        mounts = self.images.prepare_rootfs(c.id, c.image_id)
        os.makedirs(c.rootfs, mode=0o700, exist_ok=True)
        sysmount.unmount(c.rootfs)  # a stale mount from a crash must not stack
        sysmount.apply_rootfs(mounts, c.rootfs)
        try:
            from dockyard.runtime import spec as spec_mod

            passwd = sysmount.read_in_root(c.rootfs, "/etc/passwd")
            group = sysmount.read_in_root(c.rootfs, "/etc/group")
            user = ocispec.resolve_user(c.config.get("User") or "", passwd and passwd.decode(errors="replace"),
                                        group and group.decode(errors="replace"), c.host_config.get("GroupAdd"))
            hostname = c.config.get("Hostname") or c.id[:12]
            netns_path = None
            mode = networking.network_mode(c.host_config)
            if mode.startswith("container:"):
                # Join the other container's netns and share its hosts/resolv.conf, as Docker.
                other = self.get(mode.split(":", 1)[1])
                if not other.state.running or not other.state.pid:
                    raise errdefs.Conflict(f"cannot join network namespace of a non running container: {other.id}")
                netns_path = f"/proc/{other.state.pid}/ns/net"
                files = {d: os.path.join(other.bundle, os.path.basename(d))
                         for d in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")}
            else:
                files = self._write_etc_files(c, hostname)
            vol_paths = self._ensure_volumes(c)
            self._copy_up(c, vol_paths)
            for m in c.mount_plan:
                if m["Type"] == "bind" and not os.path.exists(m["Source"]):
                    os.makedirs(m["Source"], exist_ok=True)  # -v creates a missing host dir, as Docker
            spec = ocispec.build(c, spec_mod, user, hostname, files, vol_paths, netns_path=netns_path)
            _write_json(os.path.join(c.bundle, "config.json"), spec)
            # conmon enforces the size cap by renaming a fresh file in; the keeper (engine/logs.py)
            # keeps older generations. The none driver writes nothing at all ("" to the runtime).
            log_plan = plan_of(c)
            if self._rotator:
                self._rotator.prepare(c)
            stdin = bool(c.config.get("OpenStdin"))
            # StdinOnce (docker run -i): the container's stdin closes when the attached client
            # closes its stdin; otherwise it stays open across attach sessions. With a TTY it
            # always stays open (moby): `run -it` then detach, attach again, and type on.
            created = self.runtime.create(c.id, c.bundle, terminal=bool(c.config.get("Tty")), stdin=stdin,
                                          log_path="" if log_plan.driver == "none" else c.log_path,
                                          log_size_max=log_plan.size_max,
                                          leave_stdin_open=stdin and not (c.config.get("StdinOnce")
                                                                                  and not c.config.get("Tty")))
        except BaseException:
            sysmount.unmount(c.rootfs)
            raise
        if self._rotator:
            self._rotator.track(c)  # before the process runs: its first generation is kept too
        # The init holds the new netns and waits before exec: plumb it now, so the process starts
        # with its network ready. A failure here is undone by the caller's _teardown.
        if self.nm and networking.joins_networks(mode):
            eps = networking.plumb(self.nm, c, created.pid)
            self._rewrite_hosts(c, hostname, [e.ip for e in eps if e.ip])
            c.network_settings = networking.settings(self.nm, c)
        return created

    def _rewrite_hosts(self, c: Container, hostname: str, ips: list):
        """Put the container's addresses in its /etc/hosts; in place (same inode): the file is
        already bind-mounted into the container."""
        text = ocispec.hosts_file(hostname, c.config.get("Domainname") or "", self._extra_hosts(c), ips)
        with open(os.path.join(c.bundle, "hosts"), "r+") as f:
            f.truncate(0)
            f.write(text)

    def _extra_hosts(self, c: Container) -> list:
        extra = c.host_config.get("ExtraHosts") or ()
        if not any(str(e).endswith(":host-gateway") for e in extra):
            return list(extra)
        gw = networking.host_gateway(self.nm) if self.nm else "172.17.0.1"
        return networking.render_extra_hosts(extra, gw)

    def _copy_up(self, c: Container, vol_paths: dict):
        """Docker fills an empty volume with what the image has at its mount path (unless nocopy)."""
        import subprocess

        from dockyard import safepath

        for m in c.mount_plan:
            if m["Type"] != "volume" or m.get("NoCopy"):
                continue
            dst = vol_paths[m["Name"]]
            src = safepath.resolve(c.rootfs, m["Destination"])  # image paths are untrusted
            if os.listdir(dst) or not os.path.isdir(src) or os.path.islink(src) or not os.listdir(src):
                continue
            # cp -a: ownership, modes, xattrs, hard links and symlinks as they are (never followed).
            r = subprocess.run(["cp", "-a", "--", src + "/.", dst + "/"], capture_output=True, text=True)
            if r.returncode:
                raise errdefs.Internal(f"copying image content into volume {m['Name']}: {r.stderr.strip()}")

    def _write_etc_files(self, c: Container, hostname: str) -> dict:
        hc = c.host_config
        try:
            with open("/etc/resolv.conf") as f:
                host_resolv = f.read()
        except OSError:
            host_resolv = ""
        mode = networking.network_mode(hc)
        embedded = None  # user networks: the embedded DNS on the gateway of the first one
        if self.nm and networking.joins_networks(mode) and mode != "bridge":
            embedded = self.nm.get(mode).gateway
        files = {
            "/etc/hostname": hostname + "\n",
            "/etc/hosts": ocispec.hosts_file(hostname, c.config.get("Domainname") or "", self._extra_hosts(c)),
            "/etc/resolv.conf": ocispec.resolv_conf(host_resolv, mode, hc.get("Dns") or (),
                                                    hc.get("DnsSearch") or (), hc.get("DnsOptions") or (),
                                                    embedded=embedded),
        }
        if hc.get("NetworkMode") == "host":
            try:
                with open("/etc/hosts") as f:
                    files["/etc/hosts"] = f.read()
            except OSError:
                pass
        out = {}
        for dest, text in files.items():
            path = os.path.join(c.bundle, os.path.basename(dest))
            with open(path + ".tmp", "w") as f:
                f.write(text)
            os.replace(path + ".tmp", path)
            out[dest] = path
        return out

    def _teardown(self, c: Container, exited: bool = False):
        """Undo a run (thread): runtime state, conmon dirs, cgroup, the rootfs mount, the network
        endpoints and published ports. ``exited``: after the init's exit (its veths may go in the
        background). Idempotent."""
        try:
            self.runtime.delete(c.id, force=True)
        except errdefs.NotFound:
            pass
        if self.nm:
            self._release_network(c.id, exited)
        c.network_settings = {}
        sysmount.unmount(c.rootfs)

    def _release_network(self, cid: str, exited: bool = False):
        """Drop the container's endpoints and ports (thread). The kernel destroys a dead container's
        netns asynchronously, taking the veth with it: a delete can then fail with ENODEV (pyroute2's
        NetlinkError) after the endpoint row is gone. Retry for the rest; if anything failed, a
        reconcile reloads the nft ruleset that the failed call did not get to."""
        failed = False
        for attempt in range(5):
            try:
                self.nm.release_container(cid, exited=exited)
                break
            except Exception:  # noqa: BLE001 - pyroute2's errors are not errdefs
                failed = True
                if attempt == 4:
                    raise
        if failed:
            self.nm.reconcile()

    # ---- exit handling ----------------------------------------------------------------------
    def _watch(self, cid: str, monitor_pid: int):
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(monitor_pid)
        except ProcessLookupError:  # conmon is already gone: handle the exit right away
            self._spawn(self._handle_exit(cid))
            return
        self._watches[cid] = fd
        loop.add_reader(fd, self._on_monitor_exit, cid)

    def _unwatch(self, cid: str):
        fd = self._watches.pop(cid, None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)

    def _on_monitor_exit(self, cid: str):
        self._unwatch(cid)
        self._spawn(self._handle_exit(cid))

    def _spawn(self, coro):
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _handle_exit(self, cid: str):
        c = self._containers.get(cid)
        if c is None:
            return
        async with self._locks[cid]:
            if not c.state.running:
                return
            self._stop_health(cid)
            try:
                status = await asyncio.to_thread(self.runtime.exit_status, cid)
            except errdefs.NotFound:  # runtime state already gone (a teardown half done before a crash)
                status = None
            networks = dict((c.network_settings or {}).get("Networks") or {})
            await asyncio.to_thread(self._teardown, c, True)
            code, oom, fin = (status.code, status.oom_killed, status.finished_at_ns) if status else (255, False, None)
            # The exit file's mtime comes from the kernel's coarse clock (a tick behind): a process
            # that ends within a tick of its start must not seem to finish before it started.
            finished = rfc3339(max(fin or time.time_ns(), rfc3339_ns(c.state.started_at)))
            ran = restartpolicy.parse_rfc3339(finished) - restartpolicy.parse_rfc3339(c.state.started_at)
            again, delay = restartpolicy.decide(c.host_config.get("RestartPolicy"), code, c.manually_stopped, ran,
                                                c.restart_count, self._restart_delay.get(cid, 0.0))
            if again:
                c.restart_count += 1
                self._restart_delay[cid] = delay
            c.state = dataclasses.replace(c.state, status=RESTARTING if again else EXITED, pid=0, exit_code=code,
                                          oom_killed=oom, finished_at=finished)
            await asyncio.to_thread(self._db.update_container, c)  # commit point
            if oom:
                self._cev(c, "oom")
            self._cev(c, "die", exitCode=code, execDuration=max(0, int(ran)))
            self._network_events(c, "disconnect", networks)
            if self._rotator:
                self._rotator.untrack(cid)
            ev = self._exited.pop(cid, None)
            if ev:
                ev.set()
            for fut in self._exit_waiters.pop(cid, []) + ([] if again else self._stop_waiters.pop(cid, [])):
                if not fut.done():
                    fut.set_result(code)
            self._finish_sessions(cid)
            if again:
                self._schedule_restart(cid, delay)
        if c.host_config.get("AutoRemove"):
            try:
                await self.remove(cid, force=False, volumes=True)
            except errdefs.NotFound:
                pass

    async def _wait_exited(self, c: Container, timeout: float | None) -> bool:
        ev = self._exited.get(c.id)
        if ev is None:
            return True
        try:
            await asyncio.wait_for(ev.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    # ---- stop / kill / restart / wait -------------------------------------------------------
    async def stop(self, ref: str, timeout: int | None = None, signal=None):
        c = self.get(ref)
        if not c.state.running:
            raise errdefs.NotModified(f"container {c.id} is not running")
        await self._mark_stopped_by_user(c)
        if await self._cancel_restart(c):
            return
        sig = ocispec.parse_signal(signal) if signal not in (None, "") else ocispec.stop_signal(c.config)
        if timeout is None:
            timeout = c.config.get("StopTimeout")
            timeout = 10 if timeout is None else timeout
        await self._thaw(c)  # a frozen process cannot act on the stop signal
        self._cev(c, "kill", signal=int(sig))
        try:
            await asyncio.to_thread(self.runtime.kill, c.id, sig, False)
        except errdefs.DockyardError:
            pass  # already exiting; the kill below or the exit handler settles it
        if not await self._wait_exited(c, None if timeout < 0 else timeout):
            await self._kill_and_wait(c)
        self._cev(c, "stop")

    async def _kill_and_wait(self, c: Container):
        self._cev(c, "kill", signal=int(_signal.SIGKILL))
        try:
            await asyncio.to_thread(self.runtime.kill, c.id, _signal.SIGKILL, True)
        except errdefs.DockyardError:
            pass
        await self._thaw(c)  # SIGKILL first: thawed, the processes die instead of running on
        if not await self._wait_exited(c, 30):
            raise errdefs.Internal(f"container {c.id} did not exit after SIGKILL")

    async def kill(self, ref: str, signal="KILL"):
        c = self.get(ref)
        sig = ocispec.parse_signal(signal if signal not in (None, "") else "KILL")
        if not c.state.running:
            raise errdefs.Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        await self._mark_stopped_by_user(c)
        if await self._cancel_restart(c):
            return  # nothing runs while it waits to restart: cancelling is the whole kill
        self._cev(c, "kill", signal=int(sig))
        await asyncio.to_thread(self.runtime.kill, c.id, sig, sig == _signal.SIGKILL)
        await self._thaw(c)  # the signal is pending; thawed, the process acts on it
        if sig == _signal.SIGKILL:
            await self._wait_exited(c, 30)

    # ---- events (engine/events.py) ----------------------------------------------------------
    def emit_event(self, type_: str, action: str, actor_id: str, attributes: dict | None = None) -> dict:
        """Record an event (for the API layer's own operations, e.g. image pull)."""
        return self.events.emit(type_, action, actor_id, attributes)

    def _cev(self, c: Container, action: str, **extra):
        """A container event: its labels, image and name, then the action's own attributes."""
        attrs = dict(c.config.get("Labels") or {})
        attrs.update(image=c.image, name=c.name.lstrip("/"), **extra)
        self.events.emit("container", action, c.id, attrs)

    def _network_events(self, c: Container, action: str, networks: dict):
        for name, ep in (networks or {}).items():
            self.events.emit("network", action, ep.get("NetworkID") or name,
                             {"container": c.id, "name": name, "type": "bridge"})

    # ---- restart policies (decisions in engine/restart.py) -----------------------------------
    def _schedule_restart(self, cid: str, delay: float):
        t = asyncio.get_running_loop().create_task(self._restart_later(cid, delay))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        self._restart_tasks[cid] = t

    async def _restart_later(self, cid: str, delay: float):
        await asyncio.sleep(delay)
        # From here on the restart is not cancelled (stop waits for it instead): a start
        # interrupted halfway would leave a half-made container.
        self._restart_tasks.pop(cid, None)
        c = self._containers.get(cid)
        if c is None or c.state.status != RESTARTING:
            return
        try:
            await self._start(c, restarting=True)
        except errdefs.DockyardError:
            async with self._locks[cid]:  # as Docker: a failed restart leaves it exited, no retry
                if c.state.status == RESTARTING:
                    c.state.status = EXITED
                    await asyncio.to_thread(self._db.update_container, c)
                    for fut in self._stop_waiters.pop(cid, []):
                        if not fut.done():
                            fut.set_result(c.state.exit_code)

    async def _cancel_restart(self, c: Container) -> bool:
        """Stop a pending restart; True if the container is now exited because of it."""
        t = self._restart_tasks.pop(c.id, None)
        if t:
            t.cancel()
        async with self._locks[c.id]:
            if c.state.status != RESTARTING:
                return False
            c.state.status = EXITED
            await asyncio.to_thread(self._db.update_container, c)
            for fut in self._stop_waiters.pop(c.id, []):
                if not fut.done():
                    fut.set_result(c.state.exit_code)
            return True

    async def _mark_stopped_by_user(self, c: Container):
        if not c.manually_stopped:
            c.manually_stopped = True
            await asyncio.to_thread(self._db.update_container, c)

    def _restart_on_boot(self):
        """After reconcile: containers that were waiting to restart, and those Docker starts with
        the daemon (always; unless-stopped unless the user stopped it)."""
        for c in self._containers.values():
            policy = c.host_config.get("RestartPolicy")
            if c.state.status == RESTARTING:
                self._schedule_restart(c.id, restartpolicy.FIRST_DELAY)
            elif c.state.status == EXITED and restartpolicy.start_on_boot(policy, c.manually_stopped):
                c.state.status = RESTARTING
                self._db.update_container(c)
                self._schedule_restart(c.id, 0)

    # ---- pause / unpause ---------------------------------------------------------------------
    async def pause(self, ref: str):
        c = self.get(ref)
        async with self._locks[c.id]:
            if c.state.status == PAUSED:
                raise errdefs.Conflict(f"Container {c.id} is already paused")
            if c.state.status != RUNNING:
                raise errdefs.Conflict(f"Container {c.id} is not running")
            await asyncio.to_thread(self.runtime.pause, c.id)
            c.state.status = PAUSED
            await asyncio.to_thread(self._db.update_container, c)
            self._cev(c, "pause")

    async def update(self, ref: str, changes: dict) -> list[str]:
        """``docker update``: new limits and restart policy, stored for later starts and applied
        at once to a running container's cgroup. Absent or zero fields keep their value (Docker's
        rule); PidsLimit 0 or -1 means unlimited. Returns warnings."""
        c = self.get(ref)
        async with self._locks[c.id]:
            if c.state.status in (REMOVING, DEAD):
                raise errdefs.Conflict(f"Cannot update container {c.id}: container is marked for removal")
            hc = dict(c.host_config)
            for key in _UPDATABLE:
                v = changes.get(key)
                if key == "PidsLimit":
                    if v is not None:
                        hc[key] = v if v > 0 else None
                elif key == "RestartPolicy":
                    if isinstance(v, dict) and v.get("Name"):
                        hc[key] = v
                elif v:
                    hc[key] = v
            if changes.get("NanoCpus"):  # the two ways of capping CPU exclude each other
                hc["CpuQuota"] = hc["CpuPeriod"] = 0
            elif changes.get("CpuQuota") or changes.get("CpuPeriod"):
                hc["NanoCpus"] = 0
            if hc.get("NanoCpus") and (hc.get("CpuQuota") or hc.get("CpuPeriod")):
                raise errdefs.InvalidArgument("Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
            if hc.get("AutoRemove") and (hc["RestartPolicy"] or {}).get("Name", "no") != "no":
                raise errdefs.InvalidArgument("Restart policy cannot be updated because AutoRemove is enabled "
                                              "for the container")
            checked = cfgplan.fill_host_config(hc)  # the same validation as create; nothing changed yet
            if c.state.status in (RUNNING, PAUSED):
                res = ocispec.resources(checked)
                if changes.get("PidsLimit") is not None and changes["PidsLimit"] <= 0:
                    res["pids"] = {"limit": -1}  # lifting the limit is a write of "max"
                await asyncio.to_thread(_update_cgroup, c.id, res)
            c.host_config = checked
            await asyncio.to_thread(self._db.update_container, c)
            self._cev(c, "update")
        return []

    async def unpause(self, ref: str):
        c = self.get(ref)
        async with self._locks[c.id]:
            if c.state.status != PAUSED:
                raise errdefs.Conflict(f"Container {c.id} is not paused")
            await asyncio.to_thread(self.runtime.resume, c.id)
            c.state.status = RUNNING
            await asyncio.to_thread(self._db.update_container, c)
            self._cev(c, "unpause")

    async def _thaw(self, c: Container):
        """Unfreeze a paused container that is being stopped or killed (no lock: the exit handler
        may need it; a lost race only means the container already left the paused state)."""
        if c.state.status != PAUSED:
            return
        try:
            await asyncio.to_thread(self.runtime.resume, c.id)
        except errdefs.DockyardError:
            pass  # exited meanwhile, or thawed by the runtime's delete
        if c.state.status == PAUSED:
            c.state.status = RUNNING
            await asyncio.to_thread(self._db.update_container, c)

    async def restart(self, ref: str, timeout: int | None = None):
        c = self.get(ref)
        if c.state.running:
            await self.stop(c.id, timeout)
        await self.start(c.id)
        self._cev(c, "restart")

    async def wait(self, ref: str, condition: str = "not-running") -> int:
        c = self.get(ref)
        loop = asyncio.get_running_loop()
        if condition in ("", None, "not-running"):
            if not c.state.running:
                return c.state.exit_code
            waiters = self._stop_waiters
        elif condition == "next-exit":
            waiters = self._exit_waiters
        elif condition == "removed":
            waiters = self._removed_waiters
        else:
            raise errdefs.InvalidArgument(f"invalid condition: {condition!r}")
        fut = loop.create_future()
        waiters.setdefault(c.id, []).append(fut)
        return await fut

    async def resize(self, ref: str, height: int, width: int):
        c = self.get(ref)
        if not c.state.running:
            raise errdefs.Conflict(f"Container {c.id} is not running")
        await asyncio.to_thread(self.runtime.resize, c.id, int(height), int(width))

    # ---- remove / rename --------------------------------------------------------------------
    async def remove(self, ref: str, force: bool = False, volumes: bool = False):
        c = self.get(ref)
        if c.state.running:
            if not force:
                raise errdefs.Conflict(
                    f"cannot remove container \"{c.name}\": container is running: stop the container "
                    f"before removing or force remove")
            await self._mark_stopped_by_user(c)  # or its restart policy would bring it back
            await self._cancel_restart(c)
            await self._kill_and_wait(c)
        async with self._locks[c.id]:
            if c.id not in self._containers:
                return  # removed meanwhile (AutoRemove after the kill): what was asked is done
            if c.state.running:  # restarted in between
                raise errdefs.Conflict(f"cannot remove container \"{c.name}\": container is running")
            await self._remove_now(c, volumes)

    async def _remove_now(self, c: Container, volumes: bool):
        c.state.status = REMOVING
        await asyncio.to_thread(self._db.update_container, c)
        self._finish_sessions(c.id)
        await asyncio.to_thread(self._teardown, c)
        await asyncio.to_thread(self.images.remove_rootfs, c.id)
        await asyncio.to_thread(self._db.delete_container, c.id)  # commit point
        self._cev(c, "destroy")
        self._containers.pop(c.id, None)
        self._stats_last.pop(c.id, None)
        self._stats_cgroups.pop(c.id, None)
        self._drop_execs(c.id)
        await asyncio.to_thread(self._remove_bundle, c.bundle, c.id)
        if volumes:
            for m in c.mount_plan:
                if m["Type"] == "volume" and m.get("Anonymous") and not self._volume_users(m["Name"]):
                    try:
                        self.volumes.remove(m["Name"])
                        self.events.emit("volume", "destroy", m["Name"], {"driver": "local"})
                    except errdefs.NotFound:
                        pass
        for fut in (self._exit_waiters.pop(c.id, []) + self._stop_waiters.pop(c.id, [])
                    + self._removed_waiters.pop(c.id, [])):
            if not fut.done():
                fut.set_result(c.state.exit_code)

    def _remove_bundle(self, bundle: str, cid: str):
        sysmount.unmount(os.path.join(bundle, "rootfs"))
        shutil.rmtree(bundle, ignore_errors=True)

    async def rename(self, ref: str, new_name: str):
        c = self.get(ref)
        new = names.normalize(new_name)
        if new == c.name:
            raise errdefs.InvalidArgument("Renaming a container with the same name as its current name")
        if new in self._creating:
            raise names.conflict(new, self._creating[new])
        async with self._locks[c.id]:
            old = c.name
            c.name = new
            try:
                await asyncio.to_thread(self._db.update_container, c)
            except errdefs.AlreadyExists:
                c.name = old
                raise
            if self.nm:
                # The embedded DNS answers to the new name from now on, as Docker's does.
                await asyncio.to_thread(self.nm.rename_endpoint, c.id, new)
                c.network_settings = await asyncio.to_thread(networking.settings, self.nm, c)
                await asyncio.to_thread(self._db.update_container, c)
            self._cev(c, "rename", oldName=old)

    # ---- stats ------------------------------------------------------------------------------
    def stats(self, ref: str, stream: bool = True, one_shot: bool = False):
        """Checks now (NotFound), then returns an async iterator of moby ``StatsResponse`` dicts:
        one per second while ``stream``; else one, sampled twice ~1 s apart so ``precpu_stats`` is
        filled (moby's documented ``stream=0``). ``one_shot`` (API 1.41) answers at once; where moby
        leaves ``precpu_stats`` empty there (CPU 0 %), ours is the previous sample any client took
        of this container, else the container's start, so CPU % is the average since then (what
        ``podman stats --no-stream`` shows)."""
        c = self.get(ref)
        return self._stats(c, stream, one_shot)

    def _stats_baseline(self, c: Container) -> dict:
        """precpu for a one-shot sample: the last one taken, else zero CPU at the start (the host's
        CPU time then is now's less the wall time since, times the CPUs: /proc/stat counts idle)."""
        last = self._stats_last.get(c.id)
        if last is not None and last[0] == c.state.started_at:
            return last[1]
        started = restartpolicy.parse_rfc3339(c.state.started_at)
        if not started:
            return statsmod.idle_sample()
        ncpu = os.cpu_count() or 1
        since = max(0.0, time.time() - started)
        base = statsmod.empty_cpu()
        base["system_cpu_usage"] = max(0, statsmod.system_cpu_ns() - int(since * ncpu * 1e9))
        base["online_cpus"] = ncpu
        return {"read": c.state.started_at, "cpu_stats": base}

    def _stats_sample(self, c: Container) -> dict:
        # The cgroup handle is kept while the container runs (opening one reads the runtime's
        # state file and the mount table: more than the sample itself).
        cached = self._stats_cgroups.get(c.id)
        try:
            if cached is None or cached[0] != c.state.started_at:
                cached = self._stats_cgroups[c.id] = (c.state.started_at, self.runtime.cgroup(c.id))
            return statsmod.sample(cached[1], c.state.pid, rfc3339())
        except errdefs.DockyardError:  # exited between the check and the read
            return statsmod.idle_sample()

    async def _stats(self, c: Container, stream: bool, one_shot: bool):
        prev = self._stats_baseline(c) if one_shot and not stream else statsmod.idle_sample()
        first = True
        while True:
            if c.state.running and c.state.pid and c.id in self._containers:
                # In the loop's thread: ~15 small reads of cgroup and proc files, which never wait
                # on a disk, cost less than a hop to a worker thread and back.
                cur = self._stats_sample(c)
            else:
                cur = statsmod.idle_sample()
            if first and not stream and not one_shot and cur["read"] != statsmod.ZERO_TIME:
                first, prev = False, cur
                await asyncio.sleep(1)
                continue
            first = False
            out = dict(cur, preread=prev["read"], precpu_stats=prev["cpu_stats"], name=c.name, id=c.id)
            if cur["read"] != statsmod.ZERO_TIME:
                self._stats_last[c.id] = (c.state.started_at, {"read": cur["read"], "cpu_stats": cur["cpu_stats"]})
            yield out
            if not stream:
                return
            prev = cur
            await asyncio.sleep(1)

    # ---- logs / attach ----------------------------------------------------------------------
    def logs(self, ref, stdout=True, stderr=True, follow=False, since_ns=0, until_ns=0, tail=-1, batched=False):
        """Checks now (NotFound, driver without reading), then returns the async iterator of
        LogEntry (``batched``: of lists of them, as read)."""
        c = self.get(ref)
        if not plan_of(c).readable:
            raise errdefs.NotImplemented("configured logging driver does not support reading")
        read = read_log_batches if batched else read_logs
        return read(c, self, stdout, stderr, follow and c.state.running, since_ns, until_ns, tail)

    async def attach(self, ref, stdin=False, stdout=True, stderr=True, logs=False, stream=True):
        c = self.get(ref)
        backlog = []
        if logs:
            async for e in read_logs(c, self, stdout, stderr, False, 0, 0, -1):
                backlog.append((e.stream, e.data))
        s = Session(stdin and bool(c.config.get("OpenStdin")), stdout, stderr, backlog)
        self._cev(c, "attach")
        if not stream:
            s.finish()
            return s
        s.on_close = lambda sess: self._drop_session(c.id, sess)
        self._sessions.setdefault(c.id, []).append(s)
        if c.state.running:
            try:
                s.connect(self.runtime.open_attach(c.id), self._exited.get(c.id))
            except (OSError, errdefs.DockyardError):
                self._drop_session(c.id, s)
                s.finish()  # it exited in between
        return s

    def _drop_session(self, cid: str, s: Session):
        sessions = self._sessions.get(cid, [])
        if s in sessions:
            sessions.remove(s)

    def _connect_sessions(self, c: Container):
        for s in list(self._sessions.get(c.id, [])):
            try:
                s.connect(self.runtime.open_attach(c.id), self._exited.get(c.id))
            except (OSError, errdefs.DockyardError):
                self._drop_session(c.id, s)  # conmon is unreachable: the run itself may still work
                s.finish()

    def _finish_sessions(self, cid: str):
        # Connected sessions end on their own at conmon's EOF, after the output drained.
        for s in self._sessions.pop(cid, []):
            s.finish()

    # ---- volumes ------------------------------------------------------------------------------
    def _volume_users(self, name: str) -> list[str]:
        return [c.id for c in self._containers.values()
                if any(m["Type"] == "volume" and m["Name"] == name for m in c.mount_plan)]

    async def create_volume(self, name=None, driver="local", driver_opts=None, labels=None):
        v = await asyncio.to_thread(self.volumes.create, name, driver, driver_opts, labels)
        self.events.emit("volume", "create", v.name, {"driver": v.driver})
        return v

    def get_volume(self, name: str):
        return self.volumes.get(name)

    def list_volumes(self, filters: dict | None = None):
        filters = filters or {}
        out = []
        for v in self.volumes.list():
            if "name" in filters and not any(n in v.name for n in filters["name"]):
                continue
            if "dangling" in filters:
                want = str(filters["dangling"][0]).lower() in ("1", "true")
                if want != (not self._volume_users(v.name)):
                    continue
            if "label" in filters and not all(_label_match(v.labels, f) for f in filters["label"]):
                continue
            if "driver" in filters and v.driver not in filters["driver"]:
                continue
            out.append(v)
        return out

    async def remove_volume(self, name: str, force: bool = False):
        self.volumes.get(name)
        users = self._volume_users(name)
        if users:
            raise errdefs.Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        await asyncio.to_thread(self.volumes.remove, name)
        self.events.emit("volume", "destroy", name, {"driver": "local"})

    async def prune_volumes(self, all: bool = False, filters: dict | None = None):  # noqa: A002
        deleted, reclaimed = [], 0
        for v in self.list_volumes(filters):
            if self._volume_users(v.name) or (not all and not v.anonymous):
                continue  # Docker prunes only anonymous volumes unless all=true
            size = await asyncio.to_thread(self.volumes.size, v.name)
            await asyncio.to_thread(self.volumes.remove, v.name)
            self.events.emit("volume", "destroy", v.name, {"driver": v.driver})
            deleted.append(v.name)
            reclaimed += size
        return deleted, reclaimed

    # ---- networks -----------------------------------------------------------------------------
    def _nm(self):
        if self.nm is None:
            raise errdefs.Unavailable("networking is disabled in this daemon")
        return self.nm

    async def create_network(self, name, driver="bridge", subnet=None, gateway=None, ip_range=None,
                             internal=False, labels=None, options=None):
        n = await asyncio.to_thread(self._nm().create_network, name, driver or "bridge", subnet, gateway,
                                    ip_range, internal, labels, options)
        await self.dns.sync()
        self.events.emit("network", "create", n.id, {"name": n.name, "type": n.driver})
        return n

    async def list_networks(self):
        return await asyncio.to_thread(self._nm().list)

    async def get_network(self, ref: str):
        return await asyncio.to_thread(self._nm().get, ref)

    async def network_endpoints(self, ref: str):
        return await asyncio.to_thread(self._nm().endpoints, None, ref)

    async def remove_network(self, ref: str):
        n = await self.get_network(ref)
        await asyncio.to_thread(self._nm().remove_network, ref)
        await self.dns.sync()
        self.events.emit("network", "destroy", n.id, {"name": n.name, "type": n.driver})

    async def prune_networks(self, filters: dict | None = None) -> list[str]:
        """Remove unused user networks (``label`` filters as Docker's: K, K=V, label!=...)."""
        # A network only a stopped container refers to has no endpoint, but Docker keeps it.
        filters = filters or {}
        wanted = set()
        for c in self._containers.values():
            wanted.update(networking.endpoints_config(c))
        removed = []
        for n in await self.list_networks():
            if not all(_label_match(n.labels, f) for f in filters.get("label") or ()):
                continue
            if any(_label_match(n.labels, f) for f in filters.get("label!") or ()):
                continue
            if n.user_defined and n.name not in wanted and not await self.network_endpoints(n.id):
                try:
                    await self.remove_network(n.id)
                    removed.append(n.name)
                except (errdefs.Conflict, errdefs.NotFound):
                    pass  # got an endpoint meanwhile, or removed meanwhile
        return removed

    async def connect_network(self, net_ref: str, ref: str, aliases=(), ip=None):
        """Join a network: recorded in the container's EndpointsConfig; plumbed now if running."""
        c = self.get(ref)
        n = await self.get_network(net_ref)
        mode = networking.network_mode(c.host_config)
        if not networking.joins_networks(mode) or not networking.joins_networks(n.name):
            raise errdefs.Forbidden("container sharing network namespace with another container or host cannot "
                                    "be connected to any other network" if not networking.joins_networks(mode)
                                    else "container cannot be disconnected from host network or connected to "
                                         "host network")
        async with self._locks[c.id]:
            eps = dict(c.networking_config.get("EndpointsConfig") or {})
            if n.name in eps and c.state.running and n.name in (c.network_settings.get("Networks") or {}):
                raise errdefs.Forbidden(f"endpoint with name {c.name.lstrip('/')} already exists in network {n.name}")
            cfg = {"Aliases": list(aliases) or None, "IPAMConfig": {"IPv4Address": ip} if ip else None}
            if ip and not n.user_defined:
                raise errdefs.InvalidArgument("user specified IP address is supported on user defined networks only")
            if c.state.running:
                await asyncio.to_thread(self.nm.connect, c.id, f"/proc/{c.state.pid}/ns/net", n.id,
                                        list(aliases), ip, None, c.name.lstrip("/"))
                c.network_settings = await asyncio.to_thread(networking.settings, self.nm, c)
                ips = [v["IPAddress"] for v in c.network_settings["Networks"].values() if v.get("IPAddress")]
                await asyncio.to_thread(self._rewrite_hosts, c, c.config.get("Hostname") or c.id[:12], ips)
            eps[n.name] = cfg
            c.networking_config = dict(c.networking_config, EndpointsConfig=eps)
            await asyncio.to_thread(self._db.update_container, c)
            self.events.emit("network", "connect", n.id, {"container": c.id, "name": n.name, "type": n.driver})

    async def disconnect_network(self, net_ref: str, ref: str, force: bool = False):
        c = self.get(ref)
        n = await self.get_network(net_ref)
        async with self._locks[c.id]:
            eps = dict(c.networking_config.get("EndpointsConfig") or {})
            live = n.name in (c.network_settings.get("Networks") or {})
            if n.name not in eps and not live:
                raise errdefs.Forbidden(f"container {c.id} is not connected to network {n.name}")
            if live:
                await asyncio.to_thread(self.nm.disconnect, c.id, n.id)
                c.network_settings = await asyncio.to_thread(networking.settings, self.nm, c)
                ips = [v["IPAddress"] for v in c.network_settings["Networks"].values() if v.get("IPAddress")]
                await asyncio.to_thread(self._rewrite_hosts, c, c.config.get("Hostname") or c.id[:12], ips)
            eps.pop(n.name, None)
            c.networking_config = dict(c.networking_config, EndpointsConfig=eps)
            if networking.network_mode(c.host_config) == n.name:
                # The mode network is gone: the next one (or none) takes its place, as in Docker.
                c.host_config["NetworkMode"] = next(iter(eps), "none")
            await asyncio.to_thread(self._db.update_container, c)
            self.events.emit("network", "disconnect", n.id, {"container": c.id, "name": n.name, "type": n.driver})

    # ---- images (container-aware wrappers) --------------------------------------------------
    def _images_in_use(self) -> set[str]:
        return {c.image_id for c in self._containers.values()}

    async def remove_image(self, ref: str, force: bool = False, noprune: bool = False):
        image = await asyncio.to_thread(self.images.resolve, ref)
        res = await self._remove_image(image, ref, force, noprune)
        for item in res or ():
            if "Untagged" in item:
                self.events.emit("image", "untag", image.id, {"name": item["Untagged"]})
            elif "Deleted" in item:
                self.events.emit("image", "delete", item["Deleted"], {"name": item["Deleted"]})
        return res

    async def _remove_image(self, image, ref: str, force: bool, noprune: bool):
        users = [c for c in self._containers.values() if c.image_id == image.id]
        ref_is_id = ref.removeprefix("sha256:") and image.id.removeprefix("sha256:").startswith(ref.removeprefix("sha256:"))
        if users and (ref_is_id or len(image.repo_tags) <= 1):
            running = [c for c in users if c.state.running]
            if running or not force:
                kind = "running" if running else "stopped"
                raise errdefs.Conflict(
                    f"conflict: unable to delete {ref} (must be forced) - image is being used by "
                    f"{kind} container {users[0].id[:12]}" if not running else
                    f"conflict: unable to delete {ref} (cannot be forced) - image is being used by "
                    f"running container {running[0].id[:12]}")
            if not ref_is_id:
                return await asyncio.to_thread(self.images.untag, ref)
            return await asyncio.to_thread(self.images.untag, ref) if image.repo_tags else []
        if ref_is_id:
            if len(image.repo_tags) > 1 and not force:
                raise errdefs.Conflict(
                    f"conflict: unable to delete {image.id.removeprefix('sha256:')[:12]} (must be forced) - "
                    f"image is referenced in multiple repositories")
            return await asyncio.to_thread(self.images.delete, image.id)
        return await asyncio.to_thread(self.images.untag, ref)

    async def prune_images(self, dangling_only: bool = True):
        return await asyncio.to_thread(self.images.prune, dangling_only, self._images_in_use())

    # ---- info -----------------------------------------------------------------------------
    def info(self) -> dict:
        states = [c.state.status for c in self._containers.values()]
        try:
            from dockyard.runtime import cgroups
            cg_version, cg_driver = str(cgroups.version()), cgroups.driver_name()
        except Exception:  # info must answer even on an odd host
            cg_version, cg_driver = "1", "cgroupfs"
        try:
            n_images = len(self.images.list())
        except Exception:
            n_images = 0
        mem = 0
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemTotal:"):
                        mem = int(line.split()[1]) * 1024
        except OSError:
            pass
        u = os.uname()
        return {
            "Containers": len(states),
            "ContainersRunning": sum(s in (RUNNING, RESTARTING) for s in states),
            "ContainersPaused": sum(s == PAUSED for s in states),
            "ContainersStopped": sum(s in (CREATED, EXITED, DEAD, REMOVING) for s in states),
            "Images": n_images,
            "CgroupDriver": cg_driver,
            "CgroupVersion": cg_version,
            "KernelVersion": u.release,
            "OperatingSystem": _os_name(),
            "OSType": "linux",
            "Architecture": u.machine,
            "NCPU": os.cpu_count() or 1,
            "MemTotal": mem,
            "DockerRootDir": self.data_root,
            "Name": u.nodename,
            "Driver": "overlay2",
            "LoggingDriver": "json-file",
        }


# ---- helpers --------------------------------------------------------------------------------

_DOCKER_MOUNT_KEYS = ("Type", "Name", "Source", "Destination", "Driver", "Mode", "RW", "Propagation")


def docker_mounts(plan: list) -> list:
    """Docker's Mounts[] view of the plan: its keys only (Name/Driver for volumes), no --tmpfs."""
    out = []
    for m in plan:
        if m.get("Hidden"):
            continue
        keys = _DOCKER_MOUNT_KEYS if m["Type"] == "volume" else [k for k in _DOCKER_MOUNT_KEYS if k not in ("Name", "Driver")]
        out.append({k: m.get(k, "") for k in keys})
    return out


def _free_bip(pools) -> str:
    """The default bridge's address when --bip is not given: the first pool block the host does
    not route yet (only used when the network store is new; afterwards the stored one stays)."""
    import ipaddress

    from dockyard.network import ipam
    from dockyard.network.manager import _host_routes

    net = ipam.pick_subnet(pools or ipam.DEFAULT_POOLS, _host_routes())
    return f"{ipaddress.ip_address(int(net.network_address) + 1)}/{net.prefixlen}"


def _start_exit_code(msg: str) -> int:
    # Docker's mapping of start errors to exit codes (what `docker run` then exits with).
    low = msg.lower()
    if "not found" in low or "no such file" in low:
        return 127
    if "permission denied" in low:
        return 126
    return 128


_UPDATABLE = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod",
              "CpusetCpus", "CpusetMems", "PidsLimit", "RestartPolicy")


def _update_cgroup(cid: str, resources: dict):
    from dockyard.runtime import cgroups

    try:
        cgroups.open(f"/dockyard/{cid}").update(resources)
    except errdefs.DockyardError as e:
        raise errdefs.InvalidArgument(f"Cannot update container {cid}: {e}") from e
    except OSError as e:
        raise errdefs.InvalidArgument(f"Cannot update container {cid}: {e.strerror}") from e


def _write_json(path: str, obj):
    import json

    with open(path + ".tmp", "w") as f:
        json.dump(obj, f)
    os.replace(path + ".tmp", path)


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _label_match(labels: dict, f: str) -> bool:
    k, eq, v = f.partition("=")
    return k in labels and (not eq or labels[k] == v)


def _matches(c: Container, filters: dict, eng) -> bool:
    """Docker's container list filters (the common ones)."""
    for key, values in filters.items():
        values = list(values)
        if key == "id" and not any(c.id.startswith(v) for v in values):
            return False
        if key == "name" and not any(v.lstrip("/") in c.name.lstrip("/") for v in values):
            return False
        if key == "status" and c.state.status not in values:
            return False
        if key == "label" and not all(_label_match(c.config.get("Labels") or {}, v) for v in values):
            return False
        if key == "exited" and not (c.state.status == EXITED and str(c.state.exit_code) in values):
            return False
        if key == "ancestor" and not any(v in (c.image, c.image_id) or c.image_id.startswith("sha256:" + v)
                                         for v in values):
            return False
        if key == "network" and not any(
                v in (c.network_settings.get("Networks") or {}) or v in networking.endpoints_config(c)
                or any(n.get("NetworkID", "").startswith(v) for n in (c.network_settings.get("Networks") or {}).values())
                for v in values):
            return False
        if key == "publish" and not any(v in (c.network_settings.get("Ports") or {}) or
                                        v + "/tcp" in (c.network_settings.get("Ports") or {}) for v in values):
            return False
        if key == "volume" and not any(any(m.get("Name") == v or m["Destination"] == v for m in c.mount_plan)
                                       for v in values):
            return False
        if key == "health" and (c.state.health or {}).get("Status", "none") not in values:
            return False
    return True
