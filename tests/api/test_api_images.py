"""Images and volumes through the API with the real engine and the real image store (no containers:
the runtime is replaced by one that has none, so these run without namespaces)."""

import os

import docker
import pytest

from apihelpers import InProcDaemon


class NoContainers:
    """A runtime with no containers: enough for the engine to open and reconcile."""

    def list(self):
        return []

    def __getattr__(self, name):
        raise AttributeError(f"runtime.{name} is not available in image-only tests")


async def _real_engine(d):
    from dockyard.engine import Engine

    return await Engine.open(os.path.join(d, "data"), os.path.join(d, "exec"), runtime=NoContainers())


@pytest.fixture
def real(tmp_path):
    import rootfs

    d = InProcDaemon(_real_engine)
    try:
        d.tar = rootfs.make_rootfs_tar(str(tmp_path / "bb.tar"))
        yield d
    finally:
        d.close()


def test_import_list_inspect_tag_history_rmi(real):
    d = real
    iid = d.docker("import", "-m", "imported", "-c", "CMD [\"sh\"]", d.tar, "busybox").stdout.decode().strip()
    assert iid.startswith("sha256:") and len(iid) == 71
    assert d.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.decode() == \
        f"busybox:latest {iid[7:19]}\n"
    assert d.docker("image", "inspect", "-f", "{{.Id}} {{.Config.Cmd}} {{.Comment}}", "busybox").stdout.decode() \
        == f"{iid} [sh] imported\n"
    assert d.docker("image", "inspect", "-f", "{{.Id}}", iid[7:19]).stdout.decode() == iid + "\n"
    d.docker("tag", "busybox", "localhost:5000/tools/bb:1")
    out = d.docker("image", "inspect", "-f", "{{.RepoTags}}", "localhost:5000/tools/bb:1").stdout.decode()
    assert "localhost:5000/tools/bb:1" in out and "busybox:latest" in out
    assert "imported" in d.docker("history", "--no-trunc", "busybox").stdout.decode()
    assert "Image is up to date for busybox:latest" in d.docker("pull", "busybox").stdout.decode()
    r = d.docker("pull", "nosuch:1", check=False)
    assert r.returncode == 1 and "pull access denied for nosuch" in r.stderr.decode()
    r = d.docker("rmi", "localhost:5000/tools/bb:1")
    assert "Untagged: localhost:5000/tools/bb:1" in r.stdout.decode()
    r = d.docker("rmi", "busybox", "nosuch", check=False)
    assert r.returncode == 1 and "No such image: nosuch" in r.stderr.decode()


def test_rmi_of_last_tag_deletes_the_image(real):
    """Docker removes an image with its last tag (`Untagged` then `Deleted` records)."""
    d = real
    iid = d.docker("import", d.tar, "busybox").stdout.decode().strip()
    r = d.docker("rmi", "busybox")
    assert r.stdout.decode() == f"Untagged: busybox:latest\nDeleted: {iid}\n"
    assert d.docker("images", "-qa").stdout == b""


def test_save_load_roundtrip_and_bad_tar(real, tmp_path):
    d = real
    d.docker("import", d.tar, "busybox:1")
    out = str(tmp_path / "save.tar")
    d.docker("save", "-o", out, "busybox:1")
    d.docker("rmi", "busybox:1")
    assert d.docker("load", "-i", out).stdout == b"Loaded image: busybox:1\n"
    assert d.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout == b"busybox:1\n"
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all" * 100)
    r = d.docker("load", "-i", str(bad), check=False)
    assert r.returncode == 1 and r.stderr.decode().count("\n") == 1
    r = d.docker("save", "nosuch", check=False)
    assert r.returncode == 1 and "No such image" in r.stderr.decode()


def test_docker_py_images_and_volumes(real):
    d = real
    with open(d.tar, "rb") as f:
        d.docker("import", "-", "busybox", input=f.read())
    c = docker.DockerClient(base_url=d.host, timeout=30)
    try:
        img = c.images.get("busybox")
        assert img.tags == ["busybox:latest"]
        assert c.images.get(img.id.split(":")[1]).id == img.id
        assert [i.id for i in c.images.list(name="busybox")] == [img.id]
        assert c.images.list(filters={"dangling": True}) == []
        assert c.images.pull("busybox", tag="latest").id == img.id
        v = c.volumes.create("vol1", labels={"k": "v"})
        assert c.volumes.get("vol1").attrs["Labels"] == {"k": "v"} and v.attrs["Driver"] == "local"
        assert [x.name for x in c.volumes.list()] == ["vol1"]
        v.remove()
        with pytest.raises(docker.errors.NotFound):
            c.volumes.get("vol1")
        info = c.info()
        assert info["Images"] == 1 and "Containers" in info and "Debug" in info
    finally:
        c.close()


def test_image_prune_removes_dangling(real):
    d = real
    iid = d.docker("import", d.tar).stdout.decode().strip()  # no name: dangling from birth
    assert d.docker("images", "-q", "--filter", "dangling=true").stdout.decode().strip() == iid[7:19]
    r = d.docker("image", "prune", "-f")
    assert f"deleted: {iid}" in r.stdout.decode() and "Total reclaimed space" in r.stdout.decode()
    assert d.docker("images", "-qa").stdout == b""
