"""Shared fixtures: a real dockyard daemon on private roots, the busybox image, and leak checks.

Fixture names are stable; other test modules rely on them.

``busybox_tar`` (session)
    Path of a busybox rootfs tar built by ``tests/rootfs.py`` (what ``docker import`` takes).
``daemon`` (session, privileged)
    A ``dockyard daemon`` started as a subprocess on short private paths
    (``/tmp/dyt-XXXX/{data,exec,sock}``), answering ``/_ping``, with ``busybox:latest`` imported.
    Attributes: ``.host`` ("unix://..."), ``.socket``, ``.data_root``, ``.exec_root``, ``.pid``,
    ``.log_path``. Methods:
      ``.cli(*args, input=None, check=False, timeout=60)`` -> CompletedProcess of ``dockyard -H``
      ``.docker(*args, ...)`` -> the same with the real ``docker`` CLI (28)
      ``.api()`` -> ``docker.DockerClient`` (docker-py) on the socket; closed at teardown
      ``.popen("docker"|"dockyard", *args)`` -> Popen with stdout/stderr pipes (to interrupt it)
      ``.http(method, path, body=None, headers=None)`` -> (status, headers, bytes): raw HTTP
      ``.json(method, path, body=None)`` -> (status, parsed JSON): raw HTTP with a JSON body
      ``.restart(kill9=False)`` -> SIGKILL (or SIGTERM) the daemon and start it on the same roots
      ``.snapshot()`` -> HostState (mounts under the roots, cgroup dirs, container IDs);
      ``daemon.snapshot().leaks_since(before)`` lists what appeared, for "leaves nothing behind".
      ``.docker_bin``: the docker CLI path (tests/e2e/conftest.py's ``real_dockerd`` uses it).
    Teardown force-removes every container through the API, stops the daemon by PID, kills
    processes still running from this run's roots or cgroups (by PID), removes the daemon's
    bridges and nft tables (``NetworkManager.teardown``), unmounts what is left under the roots
    (deepest first, lazily), removes this run's cgroup dirs and the temp dir.
``clean_daemon`` (function)
    The same daemon; after the test it force-removes the containers, volumes, networks and images
    the test made (diffed against what existed before), even when the test failed. Use it in every test
    that creates things and does not remove them itself.

Marker ``privileged``: the test needs root (namespaces, cgroups, mounts); skipped otherwise. The
``daemon`` fixture marks nothing itself but skips when not root.

Every test's call phase gets ``DYT_TEST_TIMEOUT`` seconds (default 300), then fails instead of
hanging the suite (SIGALRM). SIGTERM to pytest acts like Ctrl-C, so fixtures still tear down.

Set ``DYT_KEEP=1`` to keep the temp dir and the daemon log after the run (debugging).
Set ``DYT_EXTERNAL_HOST=unix:///path`` to point the fixture at a daemon that is already running,
e.g. Debian's dockerd, to check that a test's expectations match Docker itself: nothing is started
or stopped (tests that restart the daemon skip), and only what the tests made is removed.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import rootfs  # noqa: E402  (tests/rootfs.py)

# Console scripts of the interpreter running the tests, by absolute path: the pyenv shim on PATH
# costs ~150 ms per call, and tests call the CLI hundreds of times.
REAL_BIN = sysconfig.get_path("scripts")
DOCKYARD = os.path.join(REAL_BIN, "dockyard")


def _find_docker() -> str:
    """The real docker CLI 28: Debian's docker.io ships an older client in /usr/bin."""
    for cand in (os.environ.get("DYT_DOCKER"), "/usr/local/bin/docker", shutil.which("docker")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return "docker"


DOCKER = _find_docker()
CGROUP_ROOT = "/sys/fs/cgroup"
IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="privileged: needs root for namespaces, cgroups and mounts")
    for item in items:
        if "privileged" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config):
    # A CI timeout or `kill` sends SIGTERM, which would end pytest without running fixture
    # finalizers and leak the daemon, its containers and mounts. As KeyboardInterrupt, pytest
    # stops the run and still tears the session down.
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


class _TestTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    # One hung client call must not eat CI's 20 minutes; the alarm interrupts blocking waits
    # (subprocess.run then kills its child).
    limit = int(os.environ.get("DYT_TEST_TIMEOUT", "300"))

    def expire(signum, frame):
        raise _TestTimeout(f"test exceeded DYT_TEST_TIMEOUT={limit}s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


_SESSION_DAEMON = []  # the running session daemon, for failure reports


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # A failing black-box test says little by itself: attach what the daemon logged.
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and _SESSION_DAEMON and {"daemon", "clean_daemon"} & set(item.fixturenames):
        rep.sections.append(("dockyard daemon log (last 30 lines)", _SESSION_DAEMON[0].log_tail(30)))


# ---------------------------------------------------------------------------------------------
# HTTP over the unix socket (stdlib only, so the fixture does not depend on the code under test)

class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def unix_http(sock_path, method, path, body=None, headers=None, timeout=60):
    conn = _UnixConnection(sock_path, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Host state: what a run may leave behind

def _unescape_mountinfo(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    return s.encode().decode("unicode_escape") if "\\" in s else s


def mounts_under(*roots: str) -> list[str]:
    """Mount points at or below any of ``roots``, as listed in /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = _unescape_mountinfo(line.split()[4])
            if any(mp == r or mp.startswith(r.rstrip("/") + "/") for r in roots):
                out.append(mp)
    return out


def dockyard_cgroup_dirs() -> set[str]:
    """Every ``.../dockyard/<id>`` cgroup dir, v1 controllers and the v2 hierarchy."""
    found = set()
    for ctrl in os.listdir(CGROUP_ROOT):
        parent = os.path.join(CGROUP_ROOT, ctrl, "dockyard")
        if os.path.isdir(parent):
            found.update(os.path.join(parent, d) for d in os.listdir(parent)
                         if os.path.isdir(os.path.join(parent, d)))
    return found


def _cgroup_has_procs(cg: str) -> bool:
    try:
        with open(os.path.join(cg, "cgroup.procs")) as f:
            return bool(f.read().strip())
    except OSError:
        return False


@dataclass(frozen=True)
class HostState:
    mounts: frozenset
    cgroups: frozenset
    containers: frozenset

    def leaks_since(self, before: "HostState") -> list[str]:
        """Human-readable list of what exists now and did not before (empty = nothing leaked).

        Cgroup dirs are global: live ones of containers this daemon never knew are left out (they
        belong to another daemon on the machine); see ``Daemon.snapshot``.
        """
        return ([f"mount {m}" for m in sorted(self.mounts - before.mounts)]
                + [f"cgroup {c}" for c in sorted(self.cgroups - before.cgroups)]
                + [f"container {c}" for c in sorted(self.containers - before.containers)])


# ---------------------------------------------------------------------------------------------
# The daemon under test

class Daemon:
    docker_bin = DOCKER  # the docker CLI the fixture uses, for tests that drive other daemons
    external = False

    def __init__(self, base: str):
        self.base = base
        self.data_root = os.path.join(base, "data")
        self.exec_root = os.path.join(base, "exec")
        self.socket = os.path.join(base, "sock")
        self.host = "unix://" + self.socket
        self.log_path = os.path.join(base, "daemon.log")
        self.docker_config = os.path.join(base, "docker-config")  # keep ~/.docker out of it
        os.makedirs(self.docker_config, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.seen_ids: set[str] = set()  # every container ID observed; teardown cleans their cgroups
        self._clients = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, timeout=30.0):
        log = open(self.log_path, "ab")
        # New session: a Ctrl-C in the pytest terminal must not hit the daemon before teardown.
        self.proc = subprocess.Popen(
            [DOCKYARD, "daemon", "--data-root", self.data_root, "--exec-root", self.exec_root,
             "--host", self.host],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockyard daemon exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, _, body = unix_http(self.socket, "GET", "/_ping", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"dockyard daemon did not answer /_ping within {timeout}s:\n{self.log_tail()}")

    def stop(self, kill9=False, timeout=20.0):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill9 else signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self, kill9=False):
        self.stop(kill9=kill9)
        self.start()


    def log_tail(self, n=40) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no daemon log)"

    # -- clients ----------------------------------------------------------------------------
    def _run(self, argv, input, check, timeout, text, env):
        if text is None:
            text = not isinstance(input, bytes)
        return subprocess.run(argv, input=input, capture_output=True, text=text, check=check,
                              timeout=timeout, env=env, stdin=None if input is not None else subprocess.DEVNULL)

    def cli(self, *args, input=None, check=False, timeout=60, text=None):
        """``dockyard -H <host> args...`` through the real console script (not the pyenv shim)."""
        return self._run([DOCKYARD, "-H", self.host, *args], input, check, timeout, text, None)

    def _docker_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = self.docker_config
        return env

    def docker(self, *args, input=None, check=False, timeout=60, text=None):
        """The real ``docker`` CLI against this daemon."""
        return self._run([DOCKER, "-H", self.host, *args], input, check, timeout, text, self._docker_env())

    def popen(self, tool, *args):
        """Start ``docker``/``dockyard`` without waiting (tests that kill the daemon mid-call)."""
        exe = {"docker": DOCKER, "dockyard": DOCKYARD}[tool]
        return subprocess.Popen([exe, "-H", self.host, *args], env=self._docker_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def api(self):
        import docker

        client = docker.DockerClient(base_url=self.host, timeout=120)
        self._clients.append(client)
        return client

    def http(self, method, path, body=None, headers=None, timeout=60):
        return unix_http(self.socket, method, path, body=body, headers=headers, timeout=timeout)

    def json(self, method, path, body=None):
        """Raw API call with a JSON body; returns (status, parsed JSON or None)."""
        data = json.dumps(body).encode() if body is not None else None
        status, _, raw = self.http(method, path, data, {"Content-Type": "application/json"} if data else None)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw

    # -- inventory --------------------------------------------------------------------------
    def container_ids(self) -> set[str]:
        status, items = self.json("GET", "/containers/json?all=1")
        ids = {c["Id"] for c in items} if status == 200 and isinstance(items, list) else set()
        self.seen_ids |= ids
        return ids

    def volume_names(self) -> set[str]:
        status, body = self.json("GET", "/volumes")
        if status != 200 or not isinstance(body, dict):
            return set()
        return {v["Name"] for v in body.get("Volumes") or []}

    def network_ids(self) -> set[str]:
        status, items = self.json("GET", "/networks")
        return {n["Id"] for n in items} if status == 200 and isinstance(items, list) else set()

    def image_ids(self) -> set[str]:
        status, items = self.json("GET", "/images/json?all=1")
        return {i["Id"] for i in items} if status == 200 and isinstance(items, list) else set()

    def snapshot(self) -> HostState:
        ids = set()
        try:
            ids = self.container_ids()
        except OSError:
            pass
        known = self._our_ids() | ids
        # Cgroup dirs are global. A live cgroup of a container this daemon never knew belongs to
        # another daemon on the machine (another test run, a developer's daemon); a leak of ours is
        # a cgroup of one of our IDs, or an empty one left behind.
        cgroups = {cg for cg in dockyard_cgroup_dirs()
                   if os.path.basename(cg) in known or not _cgroup_has_procs(cg)}
        return HostState(frozenset(mounts_under(self.data_root, self.exec_root)),
                         frozenset(cgroups), frozenset(ids))

    def import_image(self, tar_path: str, repo="busybox", tag="latest"):
        with open(tar_path, "rb") as f:
            data = f.read()
        q = urllib.parse.urlencode({"fromSrc": "-", "repo": repo, "tag": tag})
        status, _, body = self.http("POST", f"/images/create?{q}", data,
                                    {"Content-Type": "application/x-tar"}, timeout=120)
        if status != 200:
            raise RuntimeError(f"import of {repo}:{tag} failed: HTTP {status} {body[:300]!r}\n{self.log_tail()}")

    # -- teardown ---------------------------------------------------------------------------
    def remove_all_containers(self):
        for cid in self.container_ids():
            self.http("DELETE", f"/containers/{cid}?force=1&v=1", timeout=60)

    def _our_ids(self) -> set[str]:
        ids = set(self.seen_ids)
        for d in (os.path.join(self.data_root, "containers"), os.path.join(self.exec_root, "runtime")):
            if os.path.isdir(d):
                ids.update(n for n in os.listdir(d) if len(n) == 64)
        return ids

    def _our_pids(self, ids) -> set[int]:
        """PIDs this run started: in our containers' cgroups, or with our temp dir on the cmdline
        (conmon, dockyard-runtime). Never matched by name."""
        pids = set()
        for cg in dockyard_cgroup_dirs():
            if os.path.basename(cg) in ids:
                try:
                    with open(os.path.join(cg, "cgroup.procs")) as f:
                        pids.update(int(p) for p in f.read().split())
                except OSError:
                    pass
        marker = self.base.encode()
        for p in os.listdir("/proc"):
            if p.isdigit() and int(p) != os.getpid():
                try:
                    with open(f"/proc/{p}/cmdline", "rb") as f:
                        if marker in f.read():
                            pids.add(int(p))
                except OSError:
                    pass
        return pids

    def _teardown_network(self):
        """Bridges, veths and nft tables this daemon made (they outlive it, as docker0 does)."""
        state = os.path.join(self.data_root, "network")
        if not os.path.isdir(state):
            return
        try:
            from dockyard.network import NetworkManager

            nm = NetworkManager(state, self.exec_root)
            try:
                nm.teardown()
            finally:
                nm.close()
        except Exception as e:  # report, but let the rest of the cleanup run
            print(f"\nwarning: network teardown of {state} failed: {e}", file=sys.stderr)

    def cleanup_host(self):
        """After the daemon stopped: kill our leftovers, remove its network objects, unmount,
        rmdir our cgroups, rm the dir."""
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        ids = self._our_ids()
        for pid in self._our_pids(ids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
        self._teardown_network()
        # Deepest first; lazy so a busy mount cannot wedge the teardown.
        for mp in sorted(set(mounts_under(self.base)), key=lambda m: m.count("/"), reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        for cg in sorted(dockyard_cgroup_dirs(), key=len, reverse=True):
            if os.path.basename(cg) in ids:
                for _ in range(20):  # the kernel frees a cgroup shortly after its last task died
                    try:
                        os.rmdir(cg)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.05)
        if not os.environ.get("DYT_KEEP"):
            shutil.rmtree(self.base, ignore_errors=True)


class ExternalDaemon(Daemon):
    """A daemon someone else runs (DYT_EXTERNAL_HOST): used as is, never started or stopped."""

    external = True

    def __init__(self, base: str, host: str):
        super().__init__(base)
        self.host, self.socket = host, host.removeprefix("unix://")
        status, body = self.json("GET", "/info")
        self.data_root = body.get("DockerRootDir", self.data_root) if status == 200 else self.data_root
        self.exec_root = self.data_root  # unknown; only used to look for leftover mounts
        self.proc = None

    @property
    def pid(self) -> int:
        return 0

    def start(self, timeout=30.0):
        pytest.skip("DYT_EXTERNAL_HOST: the external daemon is never (re)started")

    def stop(self, kill9=False, timeout=20.0):
        pytest.skip("DYT_EXTERNAL_HOST: the external daemon is never stopped")


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory):
    return rootfs.make_rootfs_tar(str(tmp_path_factory.mktemp("busybox") / "busybox.tar"))


@pytest.fixture(scope="session")
def daemon(busybox_tar):
    if not IS_ROOT:
        pytest.skip("privileged: the daemon needs root for namespaces, cgroups and mounts")
    if not os.access(DOCKYARD, os.X_OK):
        pytest.fail(f"{DOCKYARD} missing: run `python3 -m pip install -e '.[test]'`")
    base = tempfile.mkdtemp(prefix="dyt-", dir="/tmp")
    if os.environ.get("DYT_EXTERNAL_HOST"):
        d = ExternalDaemon(base, os.environ["DYT_EXTERNAL_HOST"])
        d.import_image(busybox_tar)
        yield d
        shutil.rmtree(base, ignore_errors=True)
        return
    d = Daemon(base)
    try:
        d.start()
        d.import_image(busybox_tar)
        _SESSION_DAEMON[:] = [d]
        yield d
    finally:
        _SESSION_DAEMON.clear()
        try:
            if d.proc is not None and d.proc.poll() is None:
                d.remove_all_containers()
        except OSError:
            pass
        finally:
            d.stop()
            d.cleanup_host()
            if os.environ.get("DYT_KEEP"):
                print(f"\nDYT_KEEP: daemon dir kept at {d.base} (log {d.log_path})")


@pytest.fixture
def clean_daemon(daemon):
    """The daemon; removes whatever containers, volumes and images the test made."""
    before_c = daemon.container_ids()
    before_v, before_i, before_n = daemon.volume_names(), daemon.image_ids(), daemon.network_ids()
    yield daemon
    if not daemon.external and daemon.proc.poll() is not None:  # killed by a test that then failed
        daemon.start()
    for cid in daemon.container_ids() - before_c:
        daemon.http("DELETE", f"/containers/{cid}?force=1&v=1")
    for name in daemon.volume_names() - before_v:
        daemon.http("DELETE", f"/volumes/{urllib.parse.quote(name)}?force=1")
    for nid in daemon.network_ids() - before_n:
        daemon.http("DELETE", f"/networks/{nid}")
    for iid in daemon.image_ids() - before_i:
        daemon.http("DELETE", f"/images/{iid}?force=1")
