"""What dockyard's networking costs, in one run: `python3 bench/bench_network.py [-n 15] [-r 7]`.

One private dockyard daemon (run_bench.py's set-up: temp roots, own socket, the busybox rootfs of
tests/rootfs.py); three containers run the same busybox servers from a read-only bind of one
directory: `httpd -f -p 80 -h /www` and an upload sink (`nc -ll -e sh -c 'cat >/dev/null'`).
  * published: default bridge, `-p 127.0.0.1::80` (DNAT in the kernel, no proxy);
  * direct:    `--network host`, servers bound on other host ports (the reference);
  * MTU 65520: published, from a user network made with `-o com.docker.network.driver.mtu=65520`
    (veths default to 1500 where loopback has 65536: that, not NAT, is what bulk TCP pays).
Not the bridge IP as a path: busybox httpd closes first, leaving TIME_WAIT in the container's
netns that the host's port choice cannot see, so SYNs collide (DNAT renumbers ports).
Measured in rounds, the paths back to back in a rotating order (median of the rounds): wrk
request rate on a 1 KiB file and throughput on a 4 MiB file; one-stream bulk TCP with Python
sockets (download of 256 MiB over HTTP, upload of 256 MiB into the sink). Then container start:
`dockyard run --rm busybox true`, default bridge vs `--network none`, interleaved, median of n.
Targets: published >= 80% of direct; the bridge adds <= 20 ms to a start. It asserts nothing.
All traffic is on loopback (the host-network sink listens on all addresses for the run). The
daemon is stopped by PID with SIGTERM, which removes its bridges and nft tables; the run checks
that they are gone and removes everything else it made.
"""

import argparse
import hashlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_bench import Dockyard, Skip, mounts_under, rootfs  # noqa: E402

SMALL, LARGE, BULK = 1024, 4 << 20, 256 << 20
CHUNK = 1 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(ip, http_port, sink_port, timeout=15):
    """Both servers accept (through DNAT a closed port is a RST, so a connect proves the server)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http_get(ip, http_port, "/small.html") == SMALL:
                socket.create_connection((ip, sink_port), timeout=1).close()
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise Skip(f"servers on {ip}:{http_port}/{sink_port} did not answer within {timeout}s")


def http_get(ip, port, path) -> int:
    """GET with HTTP/1.0 (the server closes at the end); returns the body length."""
    with socket.create_connection((ip, port), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        buf, got, head = bytearray(CHUNK), 0, b""
        while b"\r\n\r\n" not in head:
            data = s.recv(4096)
            if not data:
                raise OSError("connection closed before the headers ended")
            head += data
        got = len(head.partition(b"\r\n\r\n")[2])
        while n := s.recv_into(buf):
            got += n
        return got


def download_mibs(ip, port):
    t = time.perf_counter()
    got = http_get(ip, port, "/bulk.bin")
    if got != BULK:
        raise Skip(f"bulk download from {ip}:{port} got {got} of {BULK} bytes")
    return BULK / (1 << 20) / (time.perf_counter() - t)


def upload_mibs(ip, port):
    payload = b"\0" * CHUNK
    t = time.perf_counter()
    with socket.create_connection((ip, port), timeout=30) as s:
        for _ in range(BULK // CHUNK):
            s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)  # EOF once the sink has read everything and exited
    return BULK / (1 << 20) / (time.perf_counter() - t)


def wrk(url, seconds, conns):
    """-> (requests/s, MiB/s) from wrk's summary; a run with errors is a Skip, not a number."""
    r = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", url], capture_output=True, text=True,
                       timeout=seconds + 30)
    out = r.stdout
    if r.returncode != 0 or "Non-2xx" in out:
        raise Skip(f"wrk {url}: {(out + r.stderr).strip().splitlines()[-3:]}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", out)
    scale = {"B": 1 / (1 << 20), "KB": 1 / 1024, "MB": 1, "GB": 1024}[m.group(2)]
    return rps, float(m.group(1)) * scale


class Servers:
    """The three containers and the (ip, http port, sink port) each path reaches them at."""

    def __init__(self, dy, www):
        dy.cli("network", "create", "-o", "com.docker.network.driver.mtu=65520", "dyb-mtu")
        pub, mtu = (self.published(dy, www, net) for net in ("bridge", "dyb-mtu"))
        hp, sp = free_port(), free_port()
        dy.cli("run", "-d", "--network", "host", "-v", f"{www}:/www:ro", "busybox", "sh", "-c",
               f"nc -ll -p {sp} -e sh -c 'cat >/dev/null' & exec httpd -f -p 127.0.0.1:{hp} -h /www")
        self.paths = {"published": pub, "direct": ("127.0.0.1", hp, sp), "MTU 65520": mtu}
        for addr in self.paths.values():
            wait_ready(*addr)

    @staticmethod
    def published(dy, www, network):
        cmd = ["sh", "-c", "nc -ll -p 9000 -e sh -c 'cat >/dev/null' & exec httpd -f -p 80 -h /www"]
        cid = dy.cli("run", "-d", "--network", network, "-v", f"{www}:/www:ro", "-p", "127.0.0.1::80",
                     "-p", "127.0.0.1::9000", "busybox", *cmd).strip()
        _, info = dy.d.json("GET", f"/containers/{cid}/json")
        ports = info["NetworkSettings"]["Ports"]
        return "127.0.0.1", int(ports["80/tcp"][0]["HostPort"]), int(ports["9000/tcp"][0]["HostPort"])


def measure_paths(paths, rounds, seconds, conns, skipped):
    """{metric: {path: median}}. Each metric runs the paths back to back, starting with a
    different one each round, so load from elsewhere on the machine hits them all alike."""
    metrics = [("bulk download (MiB/s)", lambda ip, hp, sp: download_mibs(ip, hp)),
               ("bulk upload (MiB/s)", lambda ip, hp, sp: upload_mibs(ip, sp))]
    if shutil.which("wrk"):
        metrics[:0] = [
            ("HTTP 1 KiB (requests/s)", lambda ip, hp, sp: wrk(f"http://{ip}:{hp}/small.html", seconds, conns)[0]),
            ("HTTP 4 MiB (MiB/s)", lambda ip, hp, sp: wrk(f"http://{ip}:{hp}/large.bin", seconds, conns)[1])]
    else:
        skipped["wrk rows"] = "wrk not installed (apt-get install wrk; ./setup.sh --bench)"
    names = list(paths)
    samples = {}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for label, fn in metrics:
            for path in order:
                try:
                    samples.setdefault(label, {}).setdefault(path, []).append(fn(*paths[path]))
                except Skip as e:
                    skipped[f"{label}, {path}"] = str(e)
    return {label: {p: statistics.median(v) for p, v in by.items()} for label, by in samples.items()}


def measure_start(dy, n):
    """Median ms of `run --rm busybox true`, bridge and none interleaved, after one warm-up each."""
    fns = {"bridge": dy.run_default, "none": dy.run_none}
    times = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(n):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append((time.perf_counter() - t) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def leftovers(data_root) -> list[str]:
    """The daemon's kernel objects still present (tag as in network/manager.py)."""
    tag = hashlib.sha256(os.path.abspath(os.path.join(data_root, "network")).encode()).hexdigest()[:6]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return ([f"link {m}" for m in re.findall(rf"^\d+: (dy{tag}\S*?)[:@]", links, re.M)]
            + [f"nft {t}" for t in re.findall(rf"^table (\S+ dockyard_{tag}\S*)", tables, re.M)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--runs", type=int, default=15, help="container starts per network mode (median)")
    ap.add_argument("-r", "--rounds", type=int, default=7, help="rounds of the traffic measurements (median)")
    ap.add_argument("-d", "--duration", type=int, default=2, help="seconds per wrk run")
    ap.add_argument("-c", "--connections", type=int, default=8, help="wrk connections")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_network.py: needs root")

    work = tempfile.mkdtemp(prefix="dyb-net-", dir="/tmp")
    www = os.path.join(work, "www")
    os.mkdir(www)
    for name, size in (("small.html", SMALL), ("large.bin", LARGE), ("bulk.bin", BULK)):
        with open(os.path.join(www, name), "wb") as f:
            f.write(os.urandom(size) if size <= LARGE else b"\1" * size)
    tar = rootfs.make_rootfs_tar(os.path.join(work, "busybox.tar"))
    traffic, start, skipped, left = {}, {}, {}, []
    dy = None
    try:
        print("starting a private dockyard daemon ...", file=sys.stderr)
        dy = Dockyard(tar, work)
        print("measuring traffic ...", file=sys.stderr)
        traffic = measure_paths(Servers(dy, www).paths, args.rounds, args.duration, args.connections, skipped)
        print("measuring container start ...", file=sys.stderr)
        start = measure_start(dy, args.runs)
    except Skip as e:
        skipped["run"] = str(e)
    except RuntimeError as e:  # the daemon did not start
        skipped["daemon"] = " / ".join(str(e).strip().splitlines()[-3:])
    finally:
        if dy is not None:
            data_root = dy.d.data_root
            dy.close()
            left = leftovers(data_root)
        for mp in sorted(mounts_under(work), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    report(traffic, start, skipped, left, args)


def report(traffic, start, skipped, left, args):
    paths = ["published", "direct", "MTU 65520"]
    print(f"\ntraffic: medians of {args.rounds} rounds (wrk -t1 -c{args.connections} -d{args.duration}s); "
          "higher is better; ratios to direct, target >= 0.80\n")
    print(f"{'':28}" + "".join(f"{p:>14}" for p in paths) + f"{'pub/direct':>12}{'MTU/direct':>12}")
    for label, by in traffic.items():
        row = f"{label:28}" + "".join(f"{by[p]:>14.1f}" if p in by else f"{'-':>14}" for p in paths)
        for p in ("published", "MTU 65520"):
            row += f"{by[p] / by['direct']:>12.2f}" if by.get(p) and by.get("direct") else f"{'-':>12}"
        print(row)
    if start:
        added = start["bridge"] - start["none"]
        print(f"\ncontainer start, `dockyard run --rm busybox true`, median of {args.runs} (ms)\n")
        print(f"{'--network none':28}{start['none']:>14.1f}")
        print(f"{'default bridge':28}{start['bridge']:>14.1f}")
        print(f"{'bridge adds':28}{added:>14.1f}   target <= 20" + ("" if added <= 20 else "  above target"))
    for what, why in skipped.items():
        print(f"skipped {what}: {why}")
    if left:
        print(f"left behind by the daemon: {', '.join(left)}")


if __name__ == "__main__":
    main()
