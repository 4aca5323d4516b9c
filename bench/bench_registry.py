"""Registry push/pull throughput, dockyard against skopeo + the reference registry, in one run:
`python3 bench/bench_registry.py [-n 5] [--clients 10]`.

One image: busybox plus a 50 MiB file of random bytes (incompressible), imported once into a temp
ImageStore; its layer is an uncompressed tar (what `docker import` stores). Four pairings, each
pushing then pulling that image over loopback HTTP:
  * dockyard client (in-process pull()/push()) -> dockyard registry (`dockyard registry serve`);
  * skopeo -> reference registry (Debian's `docker-registry`, distribution 2.8): `oci:` layout in,
    a fresh `oci:` layout out;
  * the crossings: dockyard client <-> reference registry, skopeo <-> dockyard registry.
The skopeo layout holds the same image (same config blob, same layer content). Both clients send
the layer as it is stored: dockyard pushes its uncompressed tar; skopeo 1.9 gzips an uncompressed
layer on its way to a docker:// destination (checked: CPU time the other side does not spend), so
its layout carries the layer pre-gzipped (level 1; random data does not shrink) and skopeo moves
those bytes unchanged (each pull checks the layer digest that arrived). A dockyard pull also
verifies and unpacks the layer into a snapshot; a skopeo pull into `oci:` only stores the blob.

Every round gets fresh registries (so no blob is already there, and skopeo's blob-info cache finds
no repository to mount from) and fresh pull destinations; only the transfer itself is timed.
Then N clients pull the same image at once (default 10): dockyard client processes, each into its
own ImageStore and released together once imported, from the dockyard registry; N skopeo processes
from the dockyard registry (the server alone under load) and from the reference registry (the peer).
Each client's rate is shown beside the single-client median of the same pair.

Prints medians and MB/s (1 MB = 10^6 bytes of blobs moved). It asserts nothing. Everything it makes
(registries, processes, temp dirs) is removed at the end.
"""

import argparse
import gzip
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, REPO)
import rootfs  # noqa: E402
from dockyard.images import ImageStore  # noqa: E402
from dockyard.registry import client  # noqa: E402

RANDOM_MIB = 50
MT_GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class Skip(Exception):
    """A peer cannot run here; the message says why."""


def run(argv, timeout=300):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise Skip(f"`{' '.join(argv[:3])} ...` exited {r.returncode}: {r.stderr.strip().splitlines()[-1:] or ''}")
    return r.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- registries -----------------------------------------------------------------------------------

class DockyardRegistry:
    name = "dockyard registry"

    def __init__(self, root):
        self.proc = subprocess.Popen([sys.executable, "-m", "dockyard.registry.server", "--addr", "127.0.0.1:0",
                                      "--root", root], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, text=True, cwd=REPO)
        line = self.proc.stdout.readline()  # "listening on HOST:PORT" once it accepts connections
        if not line.startswith("listening on "):
            self.close()
            raise Skip(f"dockyard registry did not start: {line!r}")
        self.host = line.split()[-1]

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


class ReferenceRegistry:
    name = "reference registry"

    def __init__(self, root):
        if not shutil.which("docker-registry"):
            raise Skip("docker-registry not installed (apt-get install docker-registry)")
        os.makedirs(root)
        self.host = f"127.0.0.1:{free_port()}"
        conf = os.path.join(root, "config.yml")
        with open(conf, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\n"
                    f"http:\n  addr: {self.host}\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        for _ in range(200):
            if self.proc.poll() is not None:
                raise Skip(f"docker-registry exited {self.proc.returncode}")
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.close()
        raise Skip("docker-registry did not answer within 10 s")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- clients --------------------------------------------------------------------------------------

class DockyardClient:
    name = "dockyard client"
    compression = "none (tar)"

    def __init__(self, store, work):
        self.store, self.work, self.n = store, work, 0

    def push(self, host, repo):
        ref = f"{host}/{repo}:1"
        self.store.tag("bench:1", ref)
        try:
            client.push(ref, self.store)
        finally:
            self.store.untag(ref)  # not the last tag: the image stays, the next push sees no mount source

    def pull_dest(self):
        self.n += 1
        return ImageStore(os.path.join(self.work, f"dy-pull-{self.n}"))

    def pull(self, host, repo, dest):
        client.pull(f"{host}/{repo}:1", dest)

    def check(self, dest):
        """Untimed: the pull really brought the image (a transfer that did nothing would look fast)."""
        if [i.id for i in dest.list()] != [self.store.resolve("bench:1").id]:
            raise Skip("a dockyard pull did not bring the image")


class Skopeo:
    name = "skopeo"
    compression = "gzip -1 (kept)"

    def __init__(self, layout, work):
        if not shutil.which("skopeo"):
            raise Skip("skopeo not installed")
        self.layout, self.work, self.n = layout, work, 0
        with open(os.path.join(layout, "index.json")) as f:
            top = json.load(f)["manifests"][0]["digest"]
        with open(os.path.join(layout, "blobs", "sha256", top[7:])) as f:
            self.layer = json.load(f)["layers"][0]["digest"]

    def push(self, host, repo):
        run(["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false",
             f"oci:{self.layout}:1", f"docker://{host}/{repo}:1"])

    def pull_dest(self):
        self.n += 1
        return os.path.join(self.work, f"sk-pull-{self.n}")

    def pull(self, host, repo, dest):
        run(["skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false",
             f"docker://{host}/{repo}:1", f"oci:{dest}:1"])

    def check(self, dest):
        """Untimed: the layer arrived as pushed (gzip, same digest), not recompressed or skipped."""
        if not os.path.exists(os.path.join(dest, "blobs", "sha256", self.layer[7:])):
            raise Skip(f"skopeo pull did not bring layer {self.layer}")


# -- set-up ---------------------------------------------------------------------------------------

def make_image(work):
    """The source store with bench:1, and an OCI layout of the same image with its layer gzipped."""
    tar = rootfs.make_rootfs_tar(os.path.join(work, "rootfs.tar"))
    blob = os.path.join(work, "random.bin")
    with open(blob, "wb") as f:
        for _ in range(RANDOM_MIB):
            f.write(os.urandom(1 << 20))
    with tarfile.open(tar, "a") as tf:
        tf.add(blob, "data/random.bin")
    os.unlink(blob)
    store = ImageStore(os.path.join(work, "src"))
    with open(tar, "rb") as f:
        image = store.import_rootfs(f, "bench:1")
    manifest = json.loads(store.content.read(image.manifest_digest))

    layout = os.path.join(work, "layout")
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs)

    def put(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest[7:]), "wb") as f:
            f.write(data)
        return digest

    layer = manifest["layers"][0]
    with store.content.open(layer["digest"]) as f:
        gz = gzip.compress(f.read(), compresslevel=1, mtime=0)
    manifest["layers"] = [{"mediaType": MT_GZIP_LAYER, "digest": put(gz), "size": len(gz)}]
    put(store.content.read(manifest["config"]["digest"]))
    raw = json.dumps(manifest).encode()
    top = {"mediaType": manifest["mediaType"], "digest": put(raw), "size": len(raw),
           "annotations": {"org.opencontainers.image.ref.name": "1"}}  # the tag skopeo's `oci:DIR:1` names
    index = {"schemaVersion": 2, "manifests": [top]}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion": "1.0.0"}')
    os.unlink(tar)
    # Bytes each client moves: layer + config (manifests are noise).
    sizes = {"dockyard client": layer["size"] + manifest["config"]["size"],
             "skopeo": len(gz) + manifest["config"]["size"]}
    for d in [os.path.join(blobs, b) for b in os.listdir(blobs)] + [store.content.path(layer["digest"])]:
        with open(d, "rb") as f:  # warm the page cache: the first push should not pay for the disk
            while f.read(1 << 20):
                pass
    return store, layout, sizes


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure_pairs(pairs, registries, n, work, skipped):
    """{(client, registry): {"push": [s...], "pull": [s...]}}, a fresh registry per round and pair.
    A pair that fails is dropped with its reason in ``skipped``."""
    out = {}
    for i in range(n):
        for c, r in pairs:
            key = (c.name, r)
            if f"{c.name} -> {r}" in skipped:
                continue
            reg = None
            try:
                reg = registries[r](os.path.join(work, f"reg-{i}-{c.name[:3]}-{r[:3]}"))
                t = out.setdefault(key, {"push": [], "pull": []})
                t["push"].append(timed(lambda: c.push(reg.host, "bench/img")))
                dest = c.pull_dest()
                t["pull"].append(timed(lambda: c.pull(reg.host, "bench/img", dest)))
                c.check(dest)
                shutil.rmtree(dest if isinstance(dest, str) else dest.root, ignore_errors=True)
            except Exception as e:  # a client error (errdefs) or a Skip: report it, go on with the rest
                skipped[f"{c.name} -> {r}"] = f"{type(e).__name__}: {e}"
                out.pop(key, None)
            finally:
                if reg is not None:
                    reg.close()
    return out


PULL_ONE = """
import sys, time
from dockyard.images import ImageStore
from dockyard.registry import client
store = ImageStore(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
t = time.perf_counter()
client.pull(sys.argv[1], store)
print(time.perf_counter() - t, flush=True)
"""


def concurrent_dockyard(host, clients, work):
    """Seconds each of ``clients`` dockyard client processes took, released together after import."""
    procs = [subprocess.Popen([sys.executable, "-c", PULL_ONE, f"{host}/bench/img:1", os.path.join(work, f"cc-{i}")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
             for i in range(clients)]
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise Skip("a pull process failed to start")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        return [float(p.stdout.readline()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stdin.close()
            p.stdout.close()


def concurrent_skopeo(host, clients, work):
    """Seconds each of ``clients`` skopeo processes took (from one launch instant to its exit)."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false",
                               f"docker://{host}/bench/img:1", f"oci:{os.path.join(work, f'sc-{i}')}:1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
             for i in range(clients)]
    done = {}
    while len(done) < len(procs):
        for p in procs:
            if p not in done and p.poll() is not None:
                done[p] = time.perf_counter() - t0
        time.sleep(0.005)
    if any(p.returncode for p in procs):
        raise Skip("a skopeo pull failed")
    return [done[p] for p in procs]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--runs", type=int, default=5, help="timed rounds per measurement (median)")
    ap.add_argument("--clients", type=int, default=10, help="concurrent pulls")
    args = ap.parse_args()
    if args.runs < 1 or args.clients < 1:
        ap.error("--runs and --clients must be at least 1")
    work = tempfile.mkdtemp(prefix="dyb-registry-", dir="/tmp")
    try:
        print("preparing the image ...", file=sys.stderr)
        store, layout, sizes = make_image(work)
        clients = {"dockyard client": DockyardClient(store, work)}
        skipped = {}
        try:
            clients["skopeo"] = Skopeo(layout, work)
        except Skip as e:
            skipped["skopeo"] = str(e)
        registries = {"dockyard registry": DockyardRegistry, "reference registry": ReferenceRegistry}
        try:
            ReferenceRegistry(os.path.join(work, "probe")).close()
        except Skip as e:
            skipped["reference registry"] = str(e)
            del registries["reference registry"]
        pairs = [(c, r) for c in clients.values() for r in registries]
        print(f"measuring {len(pairs)} pairings x {args.runs} rounds ...", file=sys.stderr)
        results = measure_pairs(pairs, registries, args.runs, work, skipped)

        print(f"measuring {args.clients} concurrent pulls ...", file=sys.stderr)
        conc = {}
        for cname, rname, fn in (("dockyard client", "dockyard registry", concurrent_dockyard),
                                 ("skopeo", "dockyard registry", concurrent_skopeo),
                                 ("skopeo", "reference registry", concurrent_skopeo)):
            if (cname, rname) not in results:
                continue
            reg = registries[rname](os.path.join(work, f"conc-reg-{cname[:3]}-{rname[:3]}"))
            try:
                clients[cname].push(reg.host, "bench/img")
                d = os.path.join(work, f"conc-pulls-{cname[:3]}-{rname[:3]}")
                os.mkdir(d)
                conc[(cname, rname)] = fn(reg.host, args.clients, d)
            except Exception as e:  # noqa: BLE001 -- reported, not fatal
                skipped[f"{cname} x{args.clients} <- {rname}"] = str(e)
            finally:
                reg.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, conc, sizes, skipped, args.runs)


def report(results, conc, sizes, skipped, n):
    mb = {k: v / 1e6 for k, v in sizes.items()}
    print(f"\nimage: busybox + {RANDOM_MIB} MiB random; layer bytes on the wire: dockyard client "
          f"{mb['dockyard client']:.1f} MB uncompressed tar, skopeo {mb['skopeo']:.1f} MB gzip -1 (kept as is)")
    print(f"medians of {n} rounds; MB/s = blob bytes moved / wall time; a dockyard pull also verifies and "
          "unpacks the layer into a snapshot, a skopeo pull verifies and stores the blob in an oci: layout\n")
    print(f"{'client -> registry':<42}{'push s':>8}{'push MB/s':>11}{'pull s':>8}{'pull MB/s':>11}")
    for (c, r), t in results.items():
        push, pull = statistics.median(t["push"]), statistics.median(t["pull"])
        print(f"{c + ' -> ' + r:<42}{push:>8.2f}{mb[c] / push:>11.1f}{pull:>8.2f}{mb[c] / pull:>11.1f}")
    base = results.get(("skopeo", "reference registry"))
    ours = results.get(("dockyard client", "dockyard registry"))
    if base and ours:
        for op in ("push", "pull"):
            r_ours = mb["dockyard client"] / statistics.median(ours[op])
            r_base = mb["skopeo"] / statistics.median(base[op])
            print(f"dockyard/dockyard vs skopeo/reference, {op} rate: {r_ours / r_base:.2f}x (target >= 1)")
    for (c, r), secs in conc.items():
        single = mb[c] / statistics.median(results[(c, r)]["pull"])
        rates = sorted(mb[c] / s for s in secs)
        print(f"\n{len(secs)} concurrent pulls, {c} <- {r}: single-client {single:.1f} MB/s")
        print("  per client MB/s: " + " ".join(f"{x:.1f}" for x in rates))
        aggregate = len(secs) * mb[c] / max(secs)
        print(f"  slowest/single {rates[0] / single:.2f} (target >= 0.5), aggregate {aggregate:.1f} MB/s")
    for what, why in skipped.items():
        print(f"skipped {what}: {why}")


if __name__ == "__main__":
    main()
