"""Layer tars: hostile members never reach the host; whiteouts; metadata; tar_directory."""

import gzip
import hashlib
import io
import os
import stat
import tarfile

import pytest

from dockyard.errdefs import InvalidArgument
from dockyard.images import archive


def make_tar(members, gz=False) -> bytes:
    """members: (name, kind, extra) with kind in file/dir/sym/link/chr/blk/fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, extra in members:
            ti = tarfile.TarInfo(name)
            data = None
            if kind == "file":
                data = extra if isinstance(extra, bytes) else b"payload"
                ti.size, ti.mode = len(data), 0o644
            elif kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, extra
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, extra
            elif kind in ("chr", "blk"):
                ti.type = tarfile.CHRTYPE if kind == "chr" else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = extra
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    return gzip.compress(raw) if gz else raw


@pytest.fixture
def sandbox(tmpdir_clean):
    """<sandbox>/target is where layers go; <sandbox>/canary must never change."""
    target = os.path.join(tmpdir_clean, "target")
    os.mkdir(target)
    canary = os.path.join(tmpdir_clean, "canary")
    with open(canary, "w") as f:
        f.write("canary")
    os.mkdir(os.path.join(tmpdir_clean, "outdir"))
    yield tmpdir_clean, target
    with open(canary) as f:
        assert f.read() == "canary", "a hostile tar modified a file outside the target"
    assert sorted(os.listdir(tmpdir_clean)) == ["canary", "outdir", "target"]
    assert os.listdir(os.path.join(tmpdir_clean, "outdir")) == []
    assert oct(os.stat(canary).st_mode) == oct(stat.S_IFREG | 0o644)


def hostile_cases(sb):
    canary, outdir = os.path.join(sb, "canary"), os.path.join(sb, "outdir")
    return {
        "dotdot": [("../canary", "file", b"pwned")],
        "dotdot_nested": [("a/../../canary", "file", b"pwned")],
        "absolute": [(canary, "file", b"pwned"), (outdir + "/new", "file", b"x")],
        "symlink_parent_abs": [("evil", "sym", outdir), ("evil/new", "file", b"x")],
        "symlink_parent_rel": [("evil", "sym", "../outdir"), ("evil/new", "file", b"x")],
        "symlink_parent_deep": [("d", "dir", None), ("d/evil", "sym", "../../../../../../../../" + outdir.lstrip("/")),
                                ("d/evil/new", "file", b"x")],
        "symlink_then_file": [("c", "sym", canary), ("c", "file", b"pwned")],
        "symlink_chain": [("a", "sym", "b"), ("b", "sym", sb), ("a/canary", "file", b"pwned")],
        "hardlink_abs": [("h", "link", canary)],
        "hardlink_dotdot": [("h", "link", "../canary")],
        "hardlink_via_symlink": [("s", "sym", sb), ("h", "link", "s/canary")],
        "hardlink_to_symlink": [("s", "sym", canary), ("h", "link", "s"), ("h", "file", b"pwned")],
        "whiteout_dotdot": [(".wh...", "file", b"")],
        "whiteout_outside": [("evil", "sym", sb), ("evil/.wh.canary", "file", b"")],
        "opaque_outside": [("evil", "sym", outdir), ("evil/.wh..wh..opq", "file", b"")],
        "dir_over_symlink": [("evil", "sym", outdir), ("evil", "dir", None), ("evil/new", "file", b"x")],
    }


CASE_NAMES = list(hostile_cases("/x"))


@pytest.mark.parametrize("case", CASE_NAMES)
@pytest.mark.parametrize("overlay", [True, False], ids=["overlay", "flat"])
def test_hostile_tar_never_writes_outside(sandbox, case, overlay):
    sb, target = sandbox
    data = make_tar(hostile_cases(sb)[case])
    try:
        archive.apply_layer(io.BytesIO(data), target, overlay=overlay)
    except InvalidArgument:
        pass  # refusing is fine; writing outside is not (checked by the fixture)


def test_dotdot_member_is_refused_with_a_clear_message(sandbox):
    sb, target = sandbox
    with pytest.raises(InvalidArgument, match="outside the target"):
        archive.apply_layer(io.BytesIO(make_tar([("../canary", "file", b"x")])), target)


def test_devices_are_skipped_fifos_kept(sandbox):
    _, target = sandbox
    archive.apply_layer(io.BytesIO(make_tar([("dev", "dir", None), ("dev/sda", "blk", (8, 0)),
                                             ("dev/mem", "chr", (1, 1)), ("p", "fifo", None)])), target)
    assert os.listdir(os.path.join(target, "dev")) == []
    assert stat.S_ISFIFO(os.lstat(os.path.join(target, "p")).st_mode)


def test_metadata_is_preserved(tmpdir_clean):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("d")
        ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = tarfile.DIRTYPE, 0o750, 12, 34, 1000000
        tf.addfile(ti)
        ti = tarfile.TarInfo("d/f")
        ti.size, ti.mode, ti.uid, ti.gid, ti.mtime = 3, 0o4755, 1234, 5678, 1500000
        tf.addfile(ti, io.BytesIO(b"abc"))
        ti = tarfile.TarInfo("d/hl")
        ti.type, ti.linkname = tarfile.LNKTYPE, "d/f"
        tf.addfile(ti)
        ti = tarfile.TarInfo("s")
        ti.type, ti.linkname, ti.uid, ti.mtime = tarfile.SYMTYPE, "d/f", 7, 1200000
        tf.addfile(ti)
    raw = buf.getvalue()
    dest = os.path.join(tmpdir_clean, "t")
    os.mkdir(dest)
    diff_id, size = archive.apply_layer(io.BytesIO(gzip.compress(raw)), dest)
    assert diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()  # of the uncompressed tar
    assert size == 3
    st = os.lstat(os.path.join(dest, "d/f"))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)) == (0o4755, 1234, 5678, 1500000)
    assert os.lstat(os.path.join(dest, "d/hl")).st_ino == st.st_ino
    d = os.lstat(os.path.join(dest, "d"))
    assert (stat.S_IMODE(d.st_mode), d.st_uid, d.st_gid, int(d.st_mtime)) == (0o750, 12, 34, 1000000)
    s = os.lstat(os.path.join(dest, "s"))
    assert os.readlink(os.path.join(dest, "s")) == "d/f" and s.st_uid == 7 and int(s.st_mtime) == 1200000


def test_whiteouts_overlay_form(tmpdir_clean):
    dest = os.path.join(tmpdir_clean, "t")
    os.mkdir(dest)
    archive.apply_layer(io.BytesIO(make_tar([("etc", "dir", None), ("etc/.wh.passwd", "file", b""),
                                             ("var", "dir", None), ("var/.wh..wh..opq", "file", b""),
                                             ("var/keep", "file", b"k")])), dest, overlay=True)
    wh = os.lstat(os.path.join(dest, "etc/passwd"))
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(os.path.join(dest, "var"), "trusted.overlay.opaque") == b"y"
    assert os.listdir(os.path.join(dest, "var")) == ["keep"]


def test_whiteouts_flat_form(tmpdir_clean):
    dest = os.path.join(tmpdir_clean, "t")
    os.mkdir(dest)
    archive.apply_layer(io.BytesIO(make_tar([("etc/passwd", "file", b"x"), ("etc/group", "file", b"x"),
                                             ("var/old", "file", b"x")])), dest, overlay=False)
    archive.apply_layer(io.BytesIO(make_tar([("etc/.wh.passwd", "file", b""), ("var/new", "file", b"n"),
                                             ("var/.wh..wh..opq", "file", b"")])), dest, overlay=False)
    assert sorted(os.listdir(os.path.join(dest, "etc"))) == ["group"]
    assert os.listdir(os.path.join(dest, "var")) == ["new"]


def test_not_a_tar_is_invalid(tmpdir_clean):
    with pytest.raises(InvalidArgument):
        archive.apply_layer(io.BytesIO(b"\x1f\x8b garbage that is not gzip"), tmpdir_clean)
    with pytest.raises(InvalidArgument):
        archive.apply_layer(io.BytesIO(b"x" * 1024), tmpdir_clean)


def test_tar_directory_is_deterministic_and_roundtrips(tmpdir_clean, busybox_tar):
    a, b = os.path.join(tmpdir_clean, "a"), os.path.join(tmpdir_clean, "b")
    os.mkdir(a)
    os.mkdir(b)
    archive.apply_layer(io.BytesIO(busybox_tar), a, overlay=True)
    os.mknod(os.path.join(a, "etc", "gone"), stat.S_IFCHR, os.makedev(0, 0))  # overlay whiteout
    os.setxattr(os.path.join(a, "var"), "trusted.overlay.opaque", b"y")
    out1, out2 = io.BytesIO(), io.BytesIO()
    d1, n1 = archive.tar_directory(a, out1)
    d2, _ = archive.tar_directory(a, out2)
    assert d1 == d2 and n1 == len(out1.getvalue())
    names = tarfile.open(fileobj=io.BytesIO(out1.getvalue())).getnames()
    assert names.index("bin") < names.index("bin/busybox") < names.index("etc")  # sorted, parents first
    assert "etc/.wh.gone" in names and "var/.wh..wh..opq" in names
    archive.apply_layer(io.BytesIO(out1.getvalue()), b, overlay=True)
    d3, _ = archive.tar_directory(b, io.BytesIO())
    assert d3 == d1


def test_fuzz_random_hostile_sequences(tmpdir_clean):
    """Random mixes of symlinks (in and out), writes through them, hardlinks and whiteouts."""
    import random
    import shutil
    rng = random.Random(42)
    canary = os.path.join(tmpdir_clean, "canary")
    with open(canary, "w") as f:
        f.write("canary")
    names = ["a", "b", "a/c", "b/d", "x", ".."]
    targets = ["/", "..", "../..", tmpdir_clean, canary, "a", "../canary", "b/../..", "/a"]
    for it in range(300):
        target = os.path.join(tmpdir_clean, "t")
        os.mkdir(target)
        members = []
        for _ in range(rng.randint(1, 8)):
            name = "/".join(rng.choice(names) for _ in range(rng.randint(1, 3)))
            kind = rng.choice(["file", "dir", "sym", "link", "wh"])
            if kind == "sym":
                members.append((name, "sym", rng.choice(targets)))
            elif kind == "link":
                members.append((name, "link", rng.choice(targets + names)))
            elif kind == "wh":
                members.append((posixpath_join(name, ".wh." + rng.choice(["canary", "t", "a", "..wh..opq"])), "file", b""))
            else:
                members.append((name, kind, b"pwned" if kind == "file" else None))
        try:
            archive.apply_layer(io.BytesIO(make_tar(members)), target, overlay=rng.random() < 0.5)
        except InvalidArgument:
            pass
        assert open(canary).read() == "canary", members
        assert sorted(os.listdir(tmpdir_clean)) == ["canary", "t"], members
        shutil.rmtree(target)


def posixpath_join(a, b):
    return f"{a}/{b}"
