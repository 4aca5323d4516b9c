"""Build a minimal busybox root filesystem from Debian's busybox-static, for tests and benchmarks.

There is no Docker Hub here: the base image of every test is this rootfs, imported as an image.
"""

import io
import os
import shutil
import subprocess
import tarfile

BUSYBOX = shutil.which("busybox") or "/bin/busybox"

_PASSWD = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nwww-data:x:33:33:www-data:/var/www:/bin/false\n"
_GROUP = "root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nstaff:x:50:www-data\nnogroup:x:65534:\n"


def applets() -> list[str]:
    out = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout
    return [a for a in out.split() if a and a != "busybox"]


def make_rootfs(dest: str) -> str:
    """Populate ``dest`` with busybox, one symlink per applet in /bin, and a small /etc."""
    for d in ("bin", "etc", "tmp", "root", "proc", "sys", "dev", "var/www", "usr/bin", "usr/sbin", "sbin"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(dest, "bin", "busybox"))
    for a in applets():
        link = os.path.join(dest, "bin", a)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(dest, "etc", "passwd"), "w") as f:
        f.write(_PASSWD)
    with open(os.path.join(dest, "etc", "group"), "w") as f:
        f.write(_GROUP)
    return dest


def make_rootfs_tar(path: str | None = None) -> bytes | str:
    """A rootfs tarball (what ``docker import`` takes). Returns bytes, or writes to ``path``."""
    buf = io.BytesIO() if path is None else None
    with tarfile.open(fileobj=buf, mode="w") if buf else tarfile.open(path, "w") as tf:
        def add_dir(name, mode=0o755):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode = tarfile.DIRTYPE, mode
            tf.addfile(ti)

        for d in ("bin", "etc", "root", "proc", "sys", "dev", "var", "var/www", "usr", "usr/bin", "usr/sbin", "sbin"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        with open(BUSYBOX, "rb") as f:
            data = f.read()
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode = len(data), 0o755
        tf.addfile(ti, io.BytesIO(data))
        for a in applets():
            ti = tarfile.TarInfo("bin/" + a)
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            tf.addfile(ti)
        for name, text in (("etc/passwd", _PASSWD), ("etc/group", _GROUP)):
            raw = text.encode()
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(raw), 0o644
            tf.addfile(ti, io.BytesIO(raw))
    return buf.getvalue() if buf else path
