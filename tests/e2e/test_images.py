"""Image round trips through the real docker CLI: import, save, load, tag, rmi."""

import json
import os
import tarfile

import pytest
from e2e_util import make_docker_archive, ok

pytestmark = pytest.mark.privileged


def test_import_save_rmi_load_round_trip(clean_daemon, busybox_tar, name, tmp_path):
    d = clean_daemon
    ref = f"{name}:1"
    # A distinct image (its own config) on the same layer as busybox.
    ok(d.docker("import", "--change", 'CMD ["echo", "round-trip"]', busybox_tar, ref))
    image_id = ok(d.docker("image", "inspect", "-f", "{{.Id}}", ref)).strip()
    assert ok(d.docker("run", "--rm", ref)) == "round-trip\n"

    saved = tmp_path / "saved.tar"
    ok(d.docker("save", "-o", str(saved), ref))
    with tarfile.open(saved) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == [ref]

    ok(d.docker("rmi", ref))
    assert d.docker("image", "inspect", ref).returncode == 1
    out = ok(d.docker("load", "-i", str(saved)))
    assert f"Loaded image: {ref}" in out, out
    assert ok(d.docker("image", "inspect", "-f", "{{.Id}}", ref)).strip() == image_id
    assert ok(d.docker("run", "--rm", ref)) == "round-trip\n"


def test_load_spec_built_archive_from_stdin(clean_daemon, busybox_tar, name, tmp_path):
    d = clean_daemon
    ref = f"{name}:2"
    path = str(tmp_path / "a.tar")
    image_id = make_docker_archive(path, busybox_tar, ref, extra_mib=1, cmd=("ls", "-s", "/big"))
    with open(path, "rb") as f:
        out = ok(d.docker("load", input=f.read(), text=False)).decode()
    assert f"Loaded image: {ref}" in out, out
    assert ok(d.docker("image", "inspect", "-f", "{{.Id}}", ref)).strip() == image_id
    assert ok(d.docker("run", "--rm", ref)).split()[0] == "1024"  # 1 MiB in KiB blocks
    history = ok(d.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", ref)).split("\n")
    assert "layer 1" in history[0], history


def test_load_rejects_garbage_and_leaves_nothing(clean_daemon, tmp_path):
    d = clean_daemon
    before = d.image_ids()
    tmp_dir = os.path.join(d.data_root, "images", "tmp")
    r = d.docker("load", input=b"this is not a tar archive" * 100, text=False)
    assert r.returncode != 0 and r.stderr.strip(), r
    assert d.image_ids() == before
    assert not os.path.isdir(tmp_dir) or os.listdir(tmp_dir) == []


def test_tag_and_rmi(clean_daemon, name):
    d = clean_daemon
    ok(d.docker("tag", "busybox", f"{name}:x"))
    assert f"{name}:x" in ok(d.docker("images", "--format", "{{.Repository}}:{{.Tag}}")).split()
    out = ok(d.docker("rmi", f"{name}:x"))
    assert f"Untagged: {name}:x" in out
    ok(d.docker("image", "inspect", "busybox"))  # the image itself stays (busybox still tags it)


def test_dockerpy_images(clean_daemon):
    client = clean_daemon.api()
    img = client.images.get("busybox")
    assert "busybox:latest" in img.tags
    assert any("busybox:latest" in i.tags for i in client.images.list())


@pytest.mark.slow
def test_interop_with_dockerd(clean_daemon, real_dockerd, busybox_tar, name, tmp_path):
    """Images cross between dockyard and Debian's dockerd in both directions, by save and load."""
    d = clean_daemon
    ours_ref, theirs_ref = f"{name}:ours", f"{name}:theirs"
    ok(d.docker("import", "--change", 'CMD ["echo", "from-dockyard"]', busybox_tar, ours_ref))
    ok(d.docker("save", "-o", str(tmp_path / "ours.tar"), ours_ref))
    out = ok(real_dockerd("load", "-i", str(tmp_path / "ours.tar")))
    assert ours_ref in out, out
    assert ok(real_dockerd("run", "--rm", ours_ref)) == "from-dockyard\n"
    assert (ok(real_dockerd("image", "inspect", "-f", "{{.Id}}", ours_ref))
            == ok(d.docker("image", "inspect", "-f", "{{.Id}}", ours_ref)))

    ok(real_dockerd("import", "--change", 'CMD ["echo", "from-dockerd"]', busybox_tar, theirs_ref))
    ok(real_dockerd("save", "-o", str(tmp_path / "theirs.tar"), theirs_ref))
    out = ok(d.docker("load", "-i", str(tmp_path / "theirs.tar")))
    assert theirs_ref in out, out
    assert ok(d.docker("run", "--rm", theirs_ref)) == "from-dockerd\n"
    assert (ok(real_dockerd("image", "inspect", "-f", "{{.Id}}", theirs_ref))
            == ok(d.docker("image", "inspect", "-f", "{{.Id}}", theirs_ref)))
