"""dockyard against its peers, side by side, in one run: `python3 bench/run_bench.py [-n 15]`.

Everything runs the same busybox rootfs (tests/rootfs.py) and the command `true`:
  * dockyard: `dockyard run --rm` through the CLI (default network and --network none), and
    create+start+wait+remove through the API on a keep-alive connection (warm daemon);
  * podman run --rm, on a private --root/--runroot (runtime runc: crun refuses hybrid cgroups);
  * docker run --rm (the docker 28 CLI) against Debian's dockerd, started in its own network and
    mount namespace with its own data/exec roots and socket, stopped by PID at the end;
  * bare `crun run` / `runc run` of an OCI bundle (the floor: no image store, no daemon).
Memory: daemon idle PSS, and host PSS per idle running container (every host process whose
command line names the container, e.g. conmon or containerd-shim, from /proc/<pid>/smaps_rollup).

Prints medians and ratios dockyard/peer; skips a peer with the reason when it cannot run. It
asserts nothing: timings do not belong in tests. Everything it makes is removed at the end.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
import rootfs  # noqa: E402
from conftest import DOCKER, DOCKYARD, Daemon, _UnixConnection, mounts_under  # noqa: E402

IDLE = 3  # idle containers per system for the memory measurement
CGROUP_ROOT = "/sys/fs/cgroup"


class Skip(Exception):
    """This peer (or one measurement) cannot run here; the message says why."""


def run(argv, env=None, timeout=60):
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise Skip(f"`{' '.join(argv[:4])} ...` exited {r.returncode}: {r.stderr.strip().splitlines()[-1:] or ''}")
    return r.stdout


def median_ms(fn, n):
    fn()  # warm-up: first-run costs (page cache, lazy imports) are not what we compare
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(p))
            except (OSError, IndexError, ValueError):
                pass
    return out


def host_pss_per_container(ids, inits):
    """Mean PSS (MiB) of host processes naming a container ID, outside the containers' PID ns."""
    inner = set()
    for pid in inits:
        try:
            inner.add(os.readlink(f"/proc/{pid}/ns/pid"))
        except OSError:
            pass
    total = 0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
            if any(i.encode() in cmd for i in ids) and os.readlink(f"/proc/{p}/ns/pid") not in inner:
                total += pss_kib(int(p))
        except OSError:
            pass
    return total / len(ids) / 1024


def cgroup_dirs(name):
    return {os.path.join(CGROUP_ROOT, c, name) for c in os.listdir(CGROUP_ROOT)
            if os.path.isdir(os.path.join(CGROUP_ROOT, c, name))}


def rmdir_tree(path):
    """Remove an (empty of tasks) cgroup subtree, deepest first."""
    for dirpath, dirnames, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------

class Dockyard:
    name = "dockyard"

    def __init__(self, tar, work):
        self.d = Daemon(tempfile.mkdtemp(prefix="dyt-bench-", dir="/tmp"))
        try:
            self.d.start()
            self.d.import_image(tar)
        except Exception:
            self.close()
            raise

    def cli(self, *args):
        return run([DOCKYARD, "-H", self.d.host, *args])

    def run_none(self):
        self.cli("run", "--rm", "--network", "none", "busybox", "true")

    def run_default(self):
        self.cli("run", "--rm", "busybox", "true")

    def api_cycle_fn(self):
        return api_cycle(self.d.socket)

    def daemon_pss(self):
        return sum(pss_kib(p) for p in [self.d.pid, *children(self.d.pid)]) / 1024

    def idle_memory(self):
        ids = [self.cli("run", "-d", "busybox", "sleep", "1000").strip() for _ in range(IDLE)]
        time.sleep(1)
        inits = [int(self.cli("inspect", "-f", "{{.State.Pid}}", i)) for i in ids]
        mem = host_pss_per_container(ids, inits)
        self.cli("rm", "-f", *ids)
        return mem

    def close(self):
        try:
            if self.d.proc is not None and self.d.proc.poll() is None:
                self.d.remove_all_containers()
        finally:
            self.d.stop()
            self.d.cleanup_host()


def api_cycle(sock_path):
    """create + start + wait + remove on one keep-alive connection, like docker-py's low-level API."""
    conn = _UnixConnection(sock_path)

    def call(method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status >= 300:
            raise Skip(f"API {method} {path}: HTTP {resp.status} {raw[:200]!r}")
        return json.loads(raw) if raw else None

    def cycle():
        cid = call("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"]})["Id"]
        call("POST", f"/containers/{cid}/start")
        call("POST", f"/containers/{cid}/wait")
        call("DELETE", f"/containers/{cid}")

    return cycle


class Podman:
    name = "podman"

    def __init__(self, tar, work):
        if not shutil.which("podman"):
            raise Skip("podman not installed (./setup.sh --bench)")
        self.dir = os.path.join(work, "podman")
        os.makedirs(self.dir)
        self.had_cgroups = cgroup_dirs("libpod_parent")
        conf = os.path.join(self.dir, "containers.conf")
        with open(conf, "w") as f:
            # podman raises RLIMIT_NOFILE/NPROC for root containers; without CAP_SYS_RESOURCE in
            # this session that fails, so ask for limits below the current ones. runc: crun
            # refuses hybrid cgroup setups. cgroupfs/file: no systemd here.
            f.write('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
                    '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=conf)
        self.base = ["podman", "--root", f"{self.dir}/root", "--runroot", f"{self.dir}/run",
                     "--tmpdir", f"{self.dir}/tmp", "--storage-driver", "overlay"]
        self.p("import", tar, "busybox:latest")
        self.p("run", "--rm", "--network", "none", "busybox", "true")

    def p(self, *args):
        return run([*self.base, *args], env=self.env)

    def run_none(self):
        self.p("run", "--rm", "--network", "none", "busybox", "true")

    def run_default(self):
        self.p("run", "--rm", "busybox", "true")

    def idle_memory(self):
        ids = [self.p("run", "-d", "--network", "none", "busybox", "sleep", "1000").strip() for _ in range(IDLE)]
        time.sleep(1)
        inits = [int(self.p("inspect", "-f", "{{.State.Pid}}", i)) for i in ids]
        mem = host_pss_per_container(ids, inits)
        self.p("rm", "-f", "-t", "0", *ids)
        return mem

    def close(self):
        subprocess.run([*self.base, "rm", "-af", "-t", "0"], env=self.env, capture_output=True)
        subprocess.run([*self.base, "system", "reset", "-f"], env=self.env, capture_output=True)
        for mp in sorted(mounts_under(self.dir), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        for cg in cgroup_dirs("libpod_parent") - self.had_cgroups:
            rmdir_tree(cg)


class Dockerd:
    name = "docker"

    def __init__(self, tar, work):
        if not shutil.which("dockerd"):
            raise Skip("dockerd not installed (./setup.sh --bench)")
        self.dir = os.path.join(work, "docker")
        os.makedirs(self.dir)
        self.had_cgroups = cgroup_dirs("docker")
        self.sock = f"{self.dir}/sock"
        self.log = open(f"{self.dir}/log", "wb")
        # Own network namespace (its bridge and iptables rules stay out of the host) and mount
        # namespace (its overlay mounts vanish with it). unshare execs dockerd: same PID.
        self.proc = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "dockerd",
             "--data-root", f"{self.dir}/data", "--exec-root", f"{self.dir}/exec",
             "-H", f"unix://{self.sock}", "--pidfile", f"{self.dir}/pid"],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL, start_new_session=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.env["DOCKER_CONFIG"] = f"{self.dir}/config"
        for _ in range(300):
            if self.proc.poll() is not None:
                raise Skip(f"dockerd exited {self.proc.returncode} (log {self.dir}/log)")
            if subprocess.run([DOCKER, "-H", f"unix://{self.sock}", "version"], env=self.env,
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise Skip("dockerd did not answer within 30 s")
        self.c("import", tar, "busybox:latest")

    def c(self, *args):
        return run([DOCKER, "-H", f"unix://{self.sock}", *args], env=self.env)

    def run_none(self):
        self.c("run", "--rm", "--network", "none", "busybox", "true")

    def run_default(self):
        self.c("run", "--rm", "busybox", "true")

    def api_cycle_fn(self):
        return api_cycle(self.sock)

    def daemon_pss(self):
        return sum(pss_kib(p) for p in [self.proc.pid, *children(self.proc.pid)]) / 1024

    def idle_memory(self):
        ids = [self.c("run", "-d", "--network", "none", "busybox", "sleep", "1000").strip() for _ in range(IDLE)]
        time.sleep(1)
        inits = [int(self.c("inspect", "-f", "{{.State.Pid}}", i)) for i in ids]
        mem = host_pss_per_container(ids, inits)
        self.c("rm", "-f", *ids)
        return mem

    def close(self):
        ids = subprocess.run([DOCKER, "-H", f"unix://{self.sock}", "ps", "-aq"], env=self.env,
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run([DOCKER, "-H", f"unix://{self.sock}", "rm", "-f", *ids], env=self.env, capture_output=True)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        for cg in cgroup_dirs("docker") - self.had_cgroups:
            rmdir_tree(cg)


class Bare:
    """`crun run` / `runc run` of an OCI bundle made by `runc spec`."""

    def __init__(self, name, work, hugetlb):
        self.name = name
        if not shutil.which(name):
            raise Skip(f"{name} not installed")
        self.dir = os.path.join(work, name)
        self.bundle = os.path.join(self.dir, "bundle")
        os.makedirs(self.bundle)
        rootfs.make_rootfs(os.path.join(self.bundle, "rootfs"))
        run(["runc", "spec", "--bundle", self.bundle])
        path = os.path.join(self.bundle, "config.json")
        with open(path) as f:
            spec = json.load(f)
        spec["process"]["args"], spec["process"]["terminal"] = ["true"], False
        spec["linux"]["cgroupsPath"] = f"/dyb-{name}"  # ours, removed at the end
        with open(path, "w") as f:
            json.dump(spec, f)
        self.n = 0
        self.hugetlb = hugetlb
        try:
            self.run_none()
        except Skip as e:
            if name == "crun" and "hybrid" in str(e):
                if not hugetlb.mount():
                    raise Skip("crun refuses hybrid cgroups while hugetlb is on v2; "
                               "rerun with --mount-hugetlb (mounted as v1 for the run, unmounted after)") from e
                self.run_none()
            else:
                raise

    def run_none(self):
        self.n += 1
        run([self.name, "--root", os.path.join(self.dir, "state"), "run", "--bundle", self.bundle,
             f"dyb-{self.name}-{self.n}"])

    def close(self):
        for cg in cgroup_dirs(f"dyb-{self.name}"):
            rmdir_tree(cg)


class Hugetlb:
    """Optionally moves the hugetlb controller to a v1 hierarchy so crun accepts the hybrid setup.

    The mount is undone after the run, but the kernel keeps the (unmounted) v1 hierarchy alive
    while any task still references its root cgroup, i.e. until reboot: hugetlb does not return
    to the v2 hierarchy. Hence opt-in.
    """

    def __init__(self, allowed):
        self.allowed, self.mounted, self.made_dir = allowed, False, False
        self.path = os.path.join(CGROUP_ROOT, "hugetlb")

    def mount(self):
        if not self.allowed:
            return False
        if not os.path.isdir(self.path):
            os.mkdir(self.path)
            self.made_dir = True
        r = subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", self.path], capture_output=True)
        self.mounted = r.returncode == 0
        return self.mounted

    def close(self):
        if self.mounted:
            subprocess.run(["umount", self.path], capture_output=True)
        if self.made_dir:
            os.rmdir(self.path)


# ---------------------------------------------------------------------------------------------

METRICS = [  # (label, method name, unit)
    ("run --rm true, --network none", "run_none", "ms"),
    ("run --rm true, default network", "run_default", "ms"),
    ("API create+start+wait+rm, warm", "api", "ms"),
    ("daemon idle PSS", "daemon_pss", "MiB"),
    ("host PSS per idle container", "idle_memory", "MiB"),
]


def measure(system, n):
    out = {}
    for label, meth, _ in METRICS:
        try:
            if meth == "api":
                if hasattr(system, "api_cycle_fn"):
                    out[label] = median_ms(system.api_cycle_fn(), n)
            elif meth.startswith("run_"):
                if hasattr(system, meth):
                    out[label] = median_ms(getattr(system, meth), n)
            elif hasattr(system, meth):
                out[label] = getattr(system, meth)()
        except Skip as e:
            print(f"  {system.name}: {label}: skipped: {e}", file=sys.stderr)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--runs", type=int, default=15, help="timed runs per measurement (median)")
    ap.add_argument("--only", default="", help="comma-separated peers to run (podman,docker,crun,runc)")
    ap.add_argument("--mount-hugetlb", action="store_true",
                    help="mount hugetlb as a cgroup v1 hierarchy so crun accepts this hybrid setup "
                         "(unmounted after; hugetlb stays off cgroup v2 until reboot)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run_bench.py: needs root")

    work = tempfile.mkdtemp(prefix="dyb-", dir="/tmp")
    tar = rootfs.make_rootfs_tar(os.path.join(work, "busybox.tar"))
    hugetlb = Hugetlb(args.mount_hugetlb)
    makers = {"podman": lambda: Podman(tar, work), "docker": lambda: Dockerd(tar, work),
              "crun": lambda: Bare("crun", work, hugetlb), "runc": lambda: Bare("runc", work, hugetlb)}
    wanted = [p for p in makers if not args.only or p in args.only.split(",")]
    results, skipped = {}, {}
    try:
        for name, make in [("dockyard", lambda: Dockyard(tar, work)), *[(p, makers[p]) for p in wanted]]:
            print(f"measuring {name} ...", file=sys.stderr)
            system = None
            try:
                system = make()
                results[name] = measure(system, args.runs)
            except Skip as e:
                skipped[name] = str(e)
            except RuntimeError as e:  # the dockyard daemon did not start
                skipped[name] = " / ".join(str(e).strip().splitlines()[-3:])
            finally:
                if system is not None:
                    system.close()
    finally:
        hugetlb.close()
        for mp in sorted(mounts_under(work), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    report(results, skipped, args.runs)


def report(results, skipped, n):
    peers = [p for p in results if p != "dockyard"]
    ours = results.get("dockyard", {})
    print(f"\nmedians of {n} runs; (x) = dockyard / peer, lower is better for dockyard\n")
    print(f"{'':38}{'dockyard':>12}" + "".join(f"{p:>18}" for p in peers))
    for label, _, unit in METRICS:
        row = [results[p].get(label) for p in peers]
        if ours.get(label) is None and not any(v is not None for v in row):
            continue
        cells = f"{label + f' ({unit})':38}" + (f"{ours[label]:>12.1f}" if label in ours else f"{'-':>12}")
        for v in row:
            if v is None:
                cells += f"{'-':>18}"
            elif label in ours and v:
                cells += f"{f'{v:.1f} ({ours[label] / v:.2f})':>18}"
            else:
                cells += f"{v:>18.1f}"
        print(cells)
    for p, why in skipped.items():
        print(f"skipped {p}: {why}")


if __name__ == "__main__":
    main()
