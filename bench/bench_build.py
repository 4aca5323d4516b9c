"""`dockyard build` against `podman build`, side by side, in one run: `python3 bench/bench_build.py [-n 5]`.

One 10-step Dockerfile over the busybox rootfs with two COPYs, three measurements each:
  * cold      every step built (`--no-cache`);
  * cached    a rebuild where every step is a cache hit;
  * one file  a rebuild after changing the file the second COPY reads (rebuilds from that COPY on).
Each system gets its own private roots (run_bench.py's Dockyard and Podman set-ups: podman needs
lowered default_ulimits and runc here). Prints medians in ms and the ratio dockyard/podman; skips
podman with the reason when it cannot run. It asserts nothing. Everything it makes is removed.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_bench import Dockyard, Podman, Skip, rootfs, run  # noqa: E402

DOCKERFILE = """\
FROM busybox
ENV APP=/app MODE=bench
WORKDIR /app
COPY one.txt /app/one.txt
RUN cat one.txt > copy1
ARG LEVEL=3
COPY two.txt /app/two.txt
RUN cat two.txt >> copy1 && echo "$LEVEL" > level
LABEL bench=build
CMD ["cat", "/app/copy1"]
"""


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def measure(build, ctx, n):
    """Medians (ms) of cold, fully cached and one-file-changed builds."""
    cold, cached, changed = [], [], []
    for i in range(n):
        cold.append(timed(lambda: build(ctx, True)))
        cached.append(timed(lambda: build(ctx, False)))
        with open(os.path.join(ctx, "two.txt"), "w") as f:
            f.write(f"two {i} {time.time()}\n")
        changed.append(timed(lambda: build(ctx, False)))
    return {k: statistics.median(v) for k, v in (("cold", cold), ("cached", cached), ("one file", changed))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--runs", type=int, default=5, help="timed rounds per measurement (median)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_build.py: needs root")
    work = tempfile.mkdtemp(prefix="dyb-build-", dir="/tmp")
    tar = rootfs.make_rootfs_tar(os.path.join(work, "busybox.tar"))
    ctx = os.path.join(work, "ctx")
    os.mkdir(ctx)
    for name, text in (("Dockerfile", DOCKERFILE), ("one.txt", "one\n"), ("two.txt", "two\n")):
        with open(os.path.join(ctx, name), "w") as f:
            f.write(text)
    results, skipped = {}, {}
    try:
        for name, make, build in (
            ("dockyard", lambda: Dockyard(tar, work),
             lambda s: lambda c, cold: s.cli("build", *(["--no-cache"] if cold else []), "-q", "-t", "bench:1", c)),
            ("podman", lambda: Podman(tar, work),
             lambda s: lambda c, cold: s.p("build", *(["--no-cache"] if cold else []), "-q",
                                           "--network", "none", "-t", "bench:1", c)),
        ):
            print(f"measuring {name} ...", file=sys.stderr)
            system = None
            try:
                system = make()
                results[name] = measure(build(system), ctx, args.runs)
            except Skip as e:
                skipped[name] = str(e)
            finally:
                if system is not None:
                    system.close()
    finally:
        run(["rm", "-rf", work])
    print(f"{'build (median ms)':<20}" + "".join(f"{n:>12}" for n in results) + "   dockyard/podman")
    for k in ("cold", "cached", "one file"):
        row = f"{k:<20}" + "".join(f"{r[k]:>12.0f}" for r in results.values())
        if "podman" in results and "dockyard" in results:
            row += f"   {results['dockyard'][k] / results['podman'][k]:>10.2f}x"
        print(row)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")


if __name__ == "__main__":
    main()
