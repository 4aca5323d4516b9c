"""Everyday operations at scale, dockyard beside podman and docker in one run:
`python3 bench/bench_ops.py [-n 15] [-r 3] [--containers 50/100] [--only podman,docker]`.

Same set-up as run_bench.py (whose peer classes it reuses): private roots for each system, the
busybox rootfs of tests/rootfs.py, dockerd in its own network and mount namespace, podman on runc.
Every container is `X run -d busybox sleep 1000` on the system's default network; podman runs in a
network namespace of ours (through `nsenter --net`, ~1 ms a command) so its bridge and firewall
rules stay off the host, as dockerd's do. Rows:
  * `X exec CTR true` through each CLI (median of -n), and exec create + start + inspect through
    docker-py on a warm client (dockyard and docker; podman has no daemon here);
  * 20 `run -d` one after another, and C (50) launched at once: wall time until every CLI has
    returned, then `ps` must list all C as running (else the row is skipped, with the reason);
    C create+start at once through the API, one connection each (the daemon without the CLIs);
    each a median of -r rounds, the containers removed after each;
  * `X stats --no-stream` with the C containers running (median of -s; the output must have C rows);
  * memory: the daemon's RSS and PSS (with its children: containerd for docker) idle after set-up
    and with M (100) containers running; host PSS per running container of the processes that serve
    it outside it (conmon for dockyard and podman, containerd-shim for docker: run_bench's
    host_pss_per_container), plus the daemon's PSS growth per container (from just before the M
    start, so what the timed phases left in its heap is not charged to them).
Timed rows interleave the peers round by round (a noisy machine hurts all alike); the memory
phase runs one peer at a time, so monitors of two systems never share pages in a PSS.

It asserts nothing. Everything it made (containers, daemons, mounts, cgroups, the netns, temp
dirs) is removed at the end, also after a failure, Ctrl-C or SIGTERM; it then looks for mounts,
processes and dockyard links of its own and prints what is left behind, if anything.
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_bench import (DOCKER, DOCKYARD, Dockerd, Dockyard, Podman, Skip, _UnixConnection,  # noqa: E402
                       children, host_pss_per_container, median_ms, mounts_under, rootfs, run)

CMD = ["busybox", "sleep", "1000"]


def mem_kib(pids):
    """(RSS, PSS) in KiB summed over pids, from /proc/<pid>/smaps_rollup."""
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


# ---------------------------------------------------------------------------------------------
# The peers: run_bench's classes, plus the argv/env of their CLI, their API socket and daemon PIDs.

class OpsDockyard(Dockyard):
    rm = ("rm", "-f")

    def __init__(self, tar, work):
        super().__init__(tar, work)
        self.argv, self.env, self.sock = [DOCKYARD, "-H", self.d.host], None, self.d.socket
        # The prefix of its links (network/manager.py: hashed from the state dir), for leftovers().
        self.links = "dy" + hashlib.sha256(os.path.join(self.d.data_root, "network").encode()).hexdigest()[:6]

    def daemon_pids(self):
        return [self.d.pid, *children(self.d.pid)]


class OpsPodman(Podman):
    rm = ("rm", "-f", "-t", "0")
    sock = None  # no daemon: no API rows, no daemon memory

    def __init__(self, tar, work):
        # A network namespace bound to a file of ours: netavark's bridge and iptables rules live
        # and die in it. Made before Podman's set-up, whose only run uses --network none.
        self.netns = os.path.join(work, "podman-netns")
        open(self.netns, "w").close()
        run(["unshare", f"--net={self.netns}", "true"])
        try:
            super().__init__(tar, work)
        except BaseException:
            self.drop_netns()
            raise
        self.base = ["nsenter", f"--net={self.netns}", *self.base]
        self.argv = self.base

    def daemon_pids(self):
        return None

    def drop_netns(self):
        subprocess.run(["umount", self.netns], capture_output=True)

    def close(self):
        try:
            super().close()
        finally:
            self.drop_netns()


class OpsDocker(Dockerd):
    rm = ("rm", "-f")

    def __init__(self, tar, work):
        try:
            super().__init__(tar, work)
        except BaseException:
            if getattr(self, "proc", None) is not None:  # dockerd runs, its set-up failed later
                self.close()
            raise
        self.argv = [DOCKER, "-H", f"unix://{self.sock}"]

    def daemon_pids(self):
        return [self.proc.pid, *children(self.proc.pid)]


def cli(peer, *args, timeout=120):
    return run([*peer.argv, *args], env=peer.env, timeout=timeout)


def running_ids(peer):
    return set(cli(peer, "ps", "-q", "--no-trunc").split())


def remove(peer, ids):
    if ids:
        cli(peer, *peer.rm, *ids, timeout=600)


def check_running(peer, ids):
    missing = set(ids) - running_ids(peer)
    if missing:
        raise Skip(f"{len(missing)} of {len(ids)} containers are not running after `run -d`")


# ---------------------------------------------------------------------------------------------
# Measurements (each returns a number; Skip says why it cannot)


def start_one_by_one(peer, n):
    t = time.perf_counter()
    ids = []
    try:
        for _ in range(n):
            ids.append(cli(peer, "run", "-d", *CMD).strip())
        took = time.perf_counter() - t
        check_running(peer, ids)
        return took
    finally:
        remove(peer, ids)


def launch(peer, n):
    """n `run -d` CLIs launched together -> (seconds until the last returned, IDs), all running.
    On failure it removes what it made, and only that."""
    before = set(cli(peer, "ps", "-aq", "--no-trunc").split())
    procs, ids, ok = [], [], False
    try:
        t = time.perf_counter()
        for _ in range(n):
            procs.append(subprocess.Popen([*peer.argv, "run", "-d", *CMD], env=peer.env, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outs = [(p, *p.communicate(timeout=600)) for p in procs]
        took = time.perf_counter() - t
        ids = [out.strip() for p, out, _ in outs if p.returncode == 0 and out.strip()]
        failed = [err.strip().splitlines()[-1:] for p, _, err in outs if p.returncode != 0]
        if failed:
            raise Skip(f"{len(failed)} of {n} `run -d` failed, e.g. {failed[0]}")
        check_running(peer, ids)
        ok = True
        return took, ids
    finally:
        if not ok:
            for p in procs:  # after an interrupt: our own children, by PID
                if p.poll() is None:
                    p.kill()
                    p.wait()
            # A CLI killed mid-way may have made a container without printing its ID.
            remove(peer, sorted(set(ids) | (set(cli(peer, "ps", "-aq", "--no-trunc").split()) - before)))


def start_at_once(peer, n):
    took, ids = launch(peer, n)
    remove(peer, ids)
    return took


def api_call(conn, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    resp = conn.getresponse()
    raw = resp.read()
    if resp.status >= 300:
        raise Skip(f"API {method} {path}: HTTP {resp.status} {raw[:200]!r}")
    return json.loads(raw) if raw else None


def api_start_at_once(peer, n):
    """n threads, one connection each, released together: create + start; seconds for all."""
    gate = threading.Barrier(n + 1)
    made, errors = [], []  # list.append is atomic: no lock needed

    def one():
        conn = _UnixConnection(peer.sock, timeout=600)
        try:
            gate.wait()
            cid = api_call(conn, "POST", "/containers/create", {"Image": "busybox", "Cmd": CMD[1:]})["Id"]
            made.append(cid)
            api_call(conn, "POST", f"/containers/{cid}/start")
        except threading.BrokenBarrierError:  # the run was interrupted before the release
            pass
        except Exception as e:
            errors.append(e)
        finally:
            conn.close()

    threads = [threading.Thread(target=one) for _ in range(n)]
    try:
        for th in threads:
            th.start()
        gate.wait()
        t = time.perf_counter()
        for th in threads:
            th.join()
        took = time.perf_counter() - t
        if errors:
            raise Skip(f"{len(errors)} of {n} API create+start failed, e.g. {errors[0]}")
        check_running(peer, made)
        return took
    finally:
        gate.abort()
        for th in threads:
            th.join()
        remove(peer, made)


def exec_api(peer, cid):
    """docker-py's exec_run, low level: exec create + start (hijacked) + inspect, warm client."""
    import docker

    api = docker.APIClient(base_url=f"unix://{peer.sock}", timeout=60)
    peer.clients = [*getattr(peer, "clients", []), api]

    def cycle():
        eid = api.exec_create(cid, ["true"])["Id"]
        api.exec_start(eid)
        code = api.exec_inspect(eid)["ExitCode"]
        if code != 0:
            raise Skip(f"API exec of `true` exited {code}")

    return cycle


def stats_ms(peer, n, ids):
    def once():
        out = cli(peer, "stats", "--no-stream")
        rows = len(out.strip().splitlines()) - 1
        if rows != len(ids):
            raise Skip(f"`stats --no-stream` listed {rows} containers, {len(ids)} are running")
    return median_ms(once, n)


def mib(kib):
    return kib / 1024


# ---------------------------------------------------------------------------------------------

def timed(fn):
    def run_once():
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
    return run_once


def interleaved(fns, rounds, scale, warm):
    """{peer: median of rounds} where each round calls every peer's fn once, in a rotating order;
    fn returns seconds. A peer whose fn raises Skip is left out of the row (reason in `why`)."""
    samples, why = {p: [] for p in fns}, {}
    names = list(fns)
    if warm:
        for p in names:
            try:
                fns[p]()
            except Skip as e:
                why[p] = str(e)
    for r in range(rounds):
        for p in names[r % len(names):] + names[:r % len(names)]:
            if p not in why:
                try:
                    samples[p].append(fns[p]())
                except Skip as e:
                    why[p] = str(e)
    return {p: statistics.median(v) * scale for p, v in samples.items() if v and p not in why}, why


class Table:
    """Rows of {peer: value or text}; a row's label carries its unit."""

    def __init__(self):
        self.rows, self.notes = [], []

    def add(self, label, values, why=None):
        self.rows.append((label, values))
        for p, reason in (why or {}).items():
            self.notes.append(f"{p}: {label}: skipped: {reason}")
            print(f"  {p}: {label}: skipped: {reason}", file=sys.stderr)

    def print(self, peers, header):
        others = [p for p in peers if p != "dockyard"]
        print(f"\n{header}\n")
        print(f"{'':46}{'dockyard':>10}" + "".join(f"{p:>20}" for p in others))
        for label, values in self.rows:
            form = ".0f" if label.endswith("(ms)") else ".2f"
            ours = values.get("dockyard")
            line = f"{label:46}" + (f"{ours:>10{form}}" if isinstance(ours, float) else f"{ours or '-':>10}")
            for p in others:
                v = values.get(p)
                if isinstance(v, float):
                    cell = f"{v:{form}} ({ours / v:.2f})" if isinstance(ours, float) and v else f"{v:{form}}"
                else:
                    cell = v or "-"
                line += f"{cell:>20}"
            print(line)
        for note in self.notes:
            print(note)


def measure(systems, args, table):
    daemons = {p: s for p, s in systems.items() if s.daemon_pids()}
    idle = {p: mem_kib(s.daemon_pids()) for p, s in daemons.items()}
    no_daemon = {p: "no daemon" for p in systems if p not in daemons}

    print("exec ...", file=sys.stderr)
    ctr = {}
    try:
        for p, s in systems.items():
            ctr[p] = cli(s, "run", "-d", *CMD).strip()
        row, why = interleaved({p: timed(lambda s=s, c=ctr[p]: cli(s, "exec", c, "true"))
                                for p, s in systems.items()}, args.runs, 1000, warm=True)
        table.add("exec CTR true, CLI (ms)", row, why)
        row, why = interleaved({p: timed(exec_api(s, ctr[p])) for p, s in daemons.items()}, args.runs, 1000, warm=True)
        table.add("exec create+start+inspect, docker-py (ms)", {**no_daemon, **row}, why)
    finally:
        for p, c in ctr.items():
            remove(systems[p], [c])

    print(f"{args.sequential} one after another ...", file=sys.stderr)
    row, why = interleaved({p: lambda s=s: start_one_by_one(s, args.sequential) for p, s in systems.items()},
                           args.rounds, 1, warm=False)
    table.add(f"{args.sequential} run -d, one after another (s)", row, why)
    print(f"{args.at_once} at once ...", file=sys.stderr)
    row, why = interleaved({p: lambda s=s: start_at_once(s, args.at_once) for p, s in systems.items()},
                           args.rounds, 1, warm=False)
    table.add(f"{args.at_once} run -d at once, until all running (s)", row, why)
    row, why = interleaved({p: lambda s=s: api_start_at_once(s, args.at_once) for p, s in daemons.items()},
                           args.rounds, 1, warm=False)
    table.add(f"{args.at_once} create+start at once, API (s)", {**no_daemon, **row}, why)

    # One peer at a time from here: only its containers run while it is measured.
    stats, mem, why_s, why_m = {}, {}, {}, {}
    for p, s in systems.items():
        print(f"{p}: stats and memory ...", file=sys.stderr)
        ids = []
        try:
            before = mem_kib(s.daemon_pids()) if p in daemons else None
            ids = launch(s, args.at_once)[1]
            try:
                stats[p] = stats_ms(s, args.stats_runs, ids)
            except Skip as e:
                why_s[p] = str(e)
            if args.memory > len(ids):
                ids += launch(s, args.memory - len(ids))[1]
            time.sleep(1)  # let the monitors settle (lazy allocations after the start)
            inits = [int(x) for x in cli(s, "inspect", "-f", "{{.State.Pid}}", *ids).split()]
            mem[p] = {"host": host_pss_per_container(ids, inits)}
            if before is not None:
                rss, pss = mem_kib(s.daemon_pids())
                mem[p].update(rss=mib(rss), pss=mib(pss), growth=mib(pss - before[1]) / len(ids))
        except Skip as e:
            why_m[p] = str(e)
        finally:
            remove(s, ids)
    m = args.memory
    table.add(f"stats --no-stream, {args.at_once} running (ms)", stats, why_s)
    table.add("daemon RSS, idle after set-up (MiB)", {**no_daemon, **{p: mib(v[0]) for p, v in idle.items()}})
    table.add("daemon PSS, idle after set-up (MiB)", {**no_daemon, **{p: mib(v[1]) for p, v in idle.items()}})
    for key, label in (("rss", f"daemon RSS, {m} running (MiB)"), ("pss", f"daemon PSS, {m} running (MiB)"),
                       ("growth", "daemon PSS growth per container (MiB)"),
                       ("host", "host PSS per container: monitor (MiB)")):
        table.add(label, {**no_daemon, **{p: v[key] for p, v in mem.items() if key in v}},
                  why_m if key == "rss" else None)
    table.add("host PSS per container: monitor + daemon (MiB)",
              {p: v["host"] + v.get("growth", 0.0) for p, v in mem.items()})


def leftovers(roots, link_prefixes):
    """What the run left behind: mounts under our dirs, processes naming them, dockyard's links."""
    out = [f"mount {m}" for m in mounts_under(*roots)]
    out += [f"link {n}" for n in os.listdir("/sys/class/net") if n.startswith(tuple(link_prefixes))]
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
            if p.isdigit() and any(r.encode() in cmd for r in roots):
                out.append(f"process {p}")
        except OSError:
            pass
    return out + [f"dir {r}" for r in roots[1:] if os.path.exists(r)]


def counts(text):
    """--containers: "N" (both counts) or "AT_ONCE/MEMORY"."""
    a, _, b = text.partition("/")
    return int(a), int(b or a)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=15, help="runs of each exec measurement (median)")
    ap.add_argument("-s", "--stats-runs", type=int, default=5, help="runs of stats --no-stream (median)")
    ap.add_argument("-r", "--rounds", type=int, default=3, help="rounds of each start measurement (median)")
    ap.add_argument("--only", default="", help="comma-separated peers besides dockyard (podman,docker)")
    ap.add_argument("--containers", type=counts, default=(50, 100), metavar="C[/M]",
                    help="containers started at once and listed by stats (C), running for the memory "
                         "measurement (M); one number sets both (default 50/100)")
    ap.add_argument("--sequential", type=int, default=20, help="containers started one after another")
    args = ap.parse_args()
    args.at_once, args.memory = args.containers
    if os.geteuid() != 0:
        sys.exit("bench_ops.py: needs root")

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)  # clean up as after Ctrl-C
    work = tempfile.mkdtemp(prefix="dyb-ops-", dir="/tmp")
    makers = {"dockyard": OpsDockyard, "podman": OpsPodman, "docker": OpsDocker}
    wanted = ["dockyard", *[p for p in ("podman", "docker") if not args.only or p in args.only.split(",")]]
    systems, table = {}, Table()
    try:
        tar = rootfs.make_rootfs_tar(os.path.join(work, "busybox.tar"))
        for p in wanted:
            print(f"setting up {p} ...", file=sys.stderr)
            try:
                systems[p] = makers[p](tar, work)
            except Skip as e:
                table.notes.append(f"skipped {p}: {e}")
            except RuntimeError as e:  # the dockyard daemon did not start
                table.notes.append(f"skipped {p}: " + " / ".join(str(e).strip().splitlines()[-3:]))
        if systems:
            measure(systems, args, table)
    except KeyboardInterrupt:
        table.notes.append("interrupted: the table is partial")
    except Skip as e:  # a clean-up between measurements failed: stop there, keep what we have
        table.notes.append(f"stopped: {e}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for p, s in systems.items():
            print(f"removing {p} ...", file=sys.stderr)
            for c in getattr(s, "clients", []):
                c.close()
            try:
                s.close()
            except Exception as e:  # report it and go on with the others
                print(f"warning: clean-up of {p} failed: {e}", file=sys.stderr)
        for mp in sorted(mounts_under(work), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        ours = [s for s in systems.values() if isinstance(s, OpsDockyard)]
        left = leftovers([work, *(s.d.base for s in ours)], [s.links for s in ours])
        shutil.rmtree(work, ignore_errors=True)
    print("left behind: " + ", ".join(left) if left else "nothing left behind", file=sys.stderr)
    table.print(wanted, f"medians: exec of {args.runs} runs, stats of {args.stats_runs}, starts of {args.rounds} "
                        "rounds; (x) = dockyard / peer, lower is better for dockyard")


if __name__ == "__main__":
    main()
