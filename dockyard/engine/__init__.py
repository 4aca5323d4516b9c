"""engine: containers and volumes as objects with persistent state; owns every state machine.

The engine is asyncio-native and lives in the daemon's event loop. Blocking work (SQLite, mounts,
tar streams, conmon launch) runs in worker threads via ``asyncio.to_thread``; nothing here forks a
Python child. State is in ``<data-root>/engine.db`` (SQLite, WAL, synchronous=FULL); each operation
has one commit point (see ARCHITECTURE.md). On open, the engine reconciles: containers whose conmon
still runs are re-adopted (their exit is watched again with a pidfd), those that exited meanwhile get
their exit code recorded, half-made ones are rolled back.

The API layer (``dockyard.api``) calls only what is below and renders Docker JSON from the returned
objects; it never reaches into ``images`` or ``runtime`` directly except through ``engine.images``.

    eng = await Engine.open(data_root, exec_root)        # reconcile happens here
        # (keyword-only images=/runtime= replace the default ImageStore/Runtime, e.g. in tests;
        #  network=True gives bridge networking (the daemon); bip=/default_pools= go to NetworkManager)
    await eng.close()                                     # containers keep running

    # containers (ref = full ID, name with or without '/', or unique ID prefix)
    cid, warnings = await eng.create_container(name, config, host_config, networking_config)
        # config / host_config / networking_config: the Docker create body parts as dicts;
        # unknown image -> NotFound("No such image: busybox:latest"); bad name -> InvalidArgument;
        # name taken -> AlreadyExists (Docker's "Conflict. The container name ..." text)
    eng.get(ref) -> Container                             # NotFound("No such container: x")
    eng.list(all=False, filters=None, limit=-1) -> list[Container]   # newest first
    await eng.start(ref)          # NotModified if running; InvalidArgument with the runtime's
                                  # message when the command cannot run (CLI maps to 126/127)
    await eng.stop(ref, timeout=None, signal=None)       # NotModified if not running
    await eng.kill(ref, signal="KILL")                   # Conflict if not running
    await eng.restart(ref, timeout=None)
    await eng.pause(ref) / await eng.unpause(ref)        # Conflict unless running / paused; stop,
                                                         # kill and remove(force) of a paused one thaw it
    await eng.remove(ref, force=False, volumes=False)    # Conflict if running and not force
    await eng.wait(ref, condition="not-running") -> int  # exit code; condition also next-exit/removed
    await eng.resize(ref, height, width)
    eng.logs(ref, stdout=True, stderr=True, follow=False, since_ns=0, until_ns=0, tail=-1)
        -> AsyncIterator[LogEntry]           # follow ends when the container stops
    await eng.attach(ref, stdin=False, stdout=True, stderr=True, logs=False, stream=True)
        -> AttachSession                     # subscribe before start so no output is lost
    await eng.rename(ref, new_name)

    # stats, cp, diff, export, commit (stats.py, copy.py, layers.py)
    eng.stats(ref, stream=True, one_shot=False) -> AsyncIterator[dict]   # moby StatsResponse; a
        # stopped container yields the all-zero sample; stream=False samples twice ~1 s apart
    await eng.archive_stat(ref, path) -> dict     # PathStat {name,size,mode (Go FileMode),mtime,linkTarget}
    await eng.get_archive(ref, path) -> (dict, file)   # tar spooled to a temp file (caller closes)
    await eng.put_archive(ref, path, fileobj, no_overwrite_dir_non_dir=False, copy_uidgid=False)
        # container paths go through safepath (root: /proc/<pid>/root, or the rootfs mounted for
        # the call); missing -> NotFound("Could not find the file <path> in container <name>")
    await eng.changes(ref) -> list[dict]          # docker diff, engine's /etc files hidden
    await eng.export(ref) -> file                 # flattened rootfs tar (caller closes)
    await eng.commit(ref, repo="", tag="", comment="", author="", pause=True, changes=(), config=None)
        -> Image                                  # config overrides the container's Config

    # exec (records in memory, as in Docker; execs.py)
    eid = await eng.create_exec(ref, cmd, env=None, user="", workdir="", tty=False, stdin=False,
                                stdout=True, stderr=True, privileged=False, detach_keys="",
                                console_size=None)         # Conflict "container <id> is not running"
    sess = await eng.start_exec(eid, detach=False, tty=None, console_size=None)
        # -> AttachSession (None when detached); its output ends after ExitCode is recorded;
        # a command that cannot run -> InvalidArgument("OCI runtime exec failed: ..."), ExitCode 126/127
    eng.inspect_exec(eid) -> Exec              # NotFound("No such exec instance: <id>")
    await eng.resize_exec(eid, height, width)

    # images (thin wrappers that add the container-aware checks, e.g. rmi of an image in use)
    eng.images -> dockyard.images.ImageStore
    await eng.remove_image(ref, force=False, noprune=False) -> list[dict]
    await eng.prune_images(dangling_only=True) -> (list[dict], int)

    # volumes
    await eng.create_volume(name|None, driver="local", driver_opts=None, labels=None) -> Volume
    eng.get_volume(name) / eng.list_volumes(filters) ; await eng.remove_volume(name, force=False)
    await eng.prune_volumes(all=False) -> (list[str], int)

    # networks (dockyard.network objects; the API renders them)
    await eng.create_network(name, driver="bridge", subnet=None, gateway=None, ip_range=None,
                             internal=False, labels=None, options=None) -> Network
    await eng.list_networks() -> list[Network] ; await eng.get_network(ref) -> Network
    await eng.network_endpoints(ref) -> list[Endpoint]
    await eng.remove_network(ref) ; await eng.prune_networks(filters=None) -> list[str]
    await eng.connect_network(net_ref, container_ref, aliases=(), ip=None)  # live if running
    await eng.disconnect_network(net_ref, container_ref, force=False)

    eng.info() -> dict  # facts for /info: counts, cgroup driver/version, kernel, root dir
"""

from dataclasses import dataclass, field

# Container states, exactly Docker's vocabulary.
CREATED, RUNNING, PAUSED, RESTARTING, REMOVING, EXITED, DEAD = (
    "created", "running", "paused", "restarting", "removing", "exited", "dead",
)


@dataclass
class State:
    status: str = CREATED
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: str = "0001-01-01T00:00:00Z"  # Go RFC3339Nano, UTC
    finished_at: str = "0001-01-01T00:00:00Z"
    health: dict | None = None  # Docker's State.Health {Status, FailingStreak, Log}; None: no healthcheck

    @property
    def running(self) -> bool:
        return self.status in (RUNNING, PAUSED, RESTARTING)


@dataclass
class Container:
    id: str  # 64 hex
    name: str  # with the leading "/"
    image: str  # as the user gave it ("busybox")
    image_id: str  # "sha256:..."
    created: str  # RFC3339Nano
    config: dict  # Docker Config, image defaults merged (Env, Cmd, Entrypoint, WorkingDir, ...)
    host_config: dict  # Docker HostConfig, defaults filled (LogConfig.Type json-file, NetworkMode)
    networking_config: dict = field(default_factory=dict)
    state: State = field(default_factory=State)
    path: str = ""  # the executable (Docker's Path)
    args: list = field(default_factory=list)
    restart_count: int = 0
    # Docker's HasBeenManuallyStopped: set by stop/kill, cleared by start; decides whether an
    # unless-stopped container comes back when the daemon starts (engine/restart.py).
    manually_stopped: bool = False
    mounts: list = field(default_factory=list)  # Docker's Mounts[] items, resolved
    log_path: str = ""
    bundle: str = ""  # <data-root>/containers/<id>
    rootfs: str = ""
    # Every requested mount (also --tmpfs ones, which Docker does not list in Mounts[]) as the
    # engine plans it: Docker's keys plus its own (Anonymous, NoCopy, TmpfsOptions, Labels).
    # Engine-internal; the API renders ``mounts``.
    mount_plan: list = field(default_factory=list)
    # The live part of Docker's NetworkSettings ({"Networks": {name: addresses}, "Ports": {...}}),
    # mirrored from the network store at start/connect and cleared at exit (engine.networking).
    network_settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LogEntry:
    stream: str  # "stdout" | "stderr"
    data: bytes  # one line including its "\n" (or a final partial line)
    time_ns: int


@dataclass
class Volume:
    name: str
    driver: str
    mountpoint: str
    created_at: str  # RFC3339 (seconds)
    labels: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    anonymous: bool = False


class AttachSession:
    """A live connection to a container's stdio.

    ``output()`` is an async iterator of (stream, bytes) with stream in {"stdout","stderr"} ("stdout"
    only for a TTY); it ends after the process exited and its output drained. ``write_stdin(data)``
    and ``close_stdin()`` feed the process's stdin (buffered until start). ``close()`` detaches.
    """

    async def output(self):  # pragma: no cover - interface
        raise NotImplementedError
        yield

    async def write_stdin(self, data: bytes) -> None:  # pragma: no cover
        raise NotImplementedError

    async def close_stdin(self) -> None:  # pragma: no cover
        raise NotImplementedError

    async def close(self) -> None:  # pragma: no cover
        raise NotImplementedError

    async def detach(self) -> None:
        """The client typed the detach keys: its stream ends, the process keeps its stdin open
        (unlike a client that went away, which closes a StdinOnce container's stdin)."""
        await self.close()


def __getattr__(name):
    if name == "Engine":
        from dockyard.engine.engine import Engine

        return Engine
    raise AttributeError(name)
