"""Small helpers shared by the e2e tests."""

import hashlib
import io
import json
import os
import platform
import shutil
import tarfile
import tempfile
import time


def poll(fn, timeout=10.0, interval=0.05):
    """Call ``fn`` until it returns something truthy; return that, or the last value on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def ok(r):
    """Assert a CompletedProcess succeeded, showing its stderr if not; return its stdout."""
    assert r.returncode == 0, f"exit {r.returncode}: {(r.stderr or '').strip()}"
    return r.stdout


def make_docker_archive(path, busybox_tar, tag, extra_mib=0, cmd=("sh",)):
    """Write a docker-archive (`docker save` format, built from the spec) to ``path``.

    Layers: the busybox rootfs tar, plus, if ``extra_mib``, one layer holding /big of random bytes
    (incompressible, so a load takes long enough to be interrupted).
    """
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    work = tempfile.mkdtemp(prefix="dyt-arch-", dir=os.path.dirname(path))
    layers = [busybox_tar]
    if extra_mib:
        big = os.path.join(work, "big.tar")
        with tarfile.open(big, "w") as tf:
            ti = tarfile.TarInfo("big")
            ti.size, ti.mode = extra_mib << 20, 0o644
            tf.addfile(ti, io.BytesIO(os.urandom(extra_mib << 20)))
        layers.append(big)

    def sha256_file(p):
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()

    diff_ids = [sha256_file(p) for p in layers]
    config = json.dumps({
        "architecture": arch, "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": list(cmd), "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + h for h in diff_ids]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(len(layers))],
    }, sort_keys=True).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    manifest = [{"Config": f"{config_hex}.json", "RepoTags": [tag],
                 "Layers": [f"{h}/layer.tar" for h in diff_ids]}]
    with tarfile.open(path, "w") as out:
        for name, data in ((f"{config_hex}.json", config), ("manifest.json", json.dumps(manifest).encode())):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            out.addfile(ti, io.BytesIO(data))
        for h, p in zip(diff_ids, layers):
            out.add(p, arcname=f"{h}/layer.tar")
    shutil.rmtree(work, ignore_errors=True)
    return "sha256:" + config_hex
