"""stats, cp, diff, export, commit through the real docker CLI, docker-py and dockyard's CLI."""

import os
import sysconfig

import pytest
from e2e_util import ok

DOCKYARD = os.path.join(sysconfig.get_path("scripts"), "dockyard")

pytestmark = pytest.mark.privileged


def test_docker_stats_limits_and_cpu(clean_daemon, name):
    d = clean_daemon
    ok(d.docker("run", "-d", "--name", name, "--memory", "64m", "busybox", "sh", "-c", "while :; do :; done"))
    out = ok(d.docker("stats", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}", name))
    nm, cpu, usage, _, limit, pids = out.split()
    assert nm == name and limit == "64MiB" and int(pids) >= 1, out
    assert float(cpu.rstrip("%")) > 50, out  # a busy loop uses one CPU; generous bound
    table = ok(d.docker("stats", "--no-stream", name))
    assert table.splitlines()[0].split() == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT",
                                             "MEM", "%", "NET", "I/O", "BLOCK", "I/O", "PIDS"]
    s = d.api().api.stats(name, stream=False)
    assert s["memory_stats"]["limit"] == 64 << 20 and s["precpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert s["name"] == "/" + name and s["pids_stats"]["current"] >= 1 and s["preread"] != s["read"]
    # Streaming: one sample a second, each with the previous one as pre*.
    gen = d.api().api.stats(name, stream=True, decode=True)
    a, b = next(gen), next(gen)
    gen.close()
    assert b["preread"] == a["read"] and b["cpu_stats"]["cpu_usage"]["total_usage"] > a["cpu_stats"]["cpu_usage"]["total_usage"]
    # dockyard's own table: the same columns, one row.
    rows = ok(d.cli("stats", "--no-stream", name, text=True)).splitlines()
    assert rows[0].split()[:3] == ["CONTAINER", "ID", "NAME"] and name in rows[1] and "64MiB" in rows[1], rows


def test_stats_stopped_and_missing(clean_daemon, name):
    d = clean_daemon
    ok(d.docker("create", "--name", name, "busybox", "true"))
    s = d.api().api.stats(name, stream=False)
    assert s["read"] == "0001-01-01T00:00:00Z" and s["memory_stats"] == {}
    r = d.docker("stats", "--no-stream", "nosuch-" + name)
    assert r.returncode != 0 and "No such container" in r.stderr, r


@pytest.fixture
def workdir(tmp_path):
    return tmp_path  # pytest removes it


@pytest.mark.parametrize("running", [True, False])
def test_docker_cp_both_ways(clean_daemon, name, workdir, running):
    d = clean_daemon
    before = d.snapshot()
    ok(d.docker("run", "-d", "--name", name, "-v", f"{workdir}/vol:/vol", "busybox", "sh", "-c",
                "mkdir -p /data/sub && echo one > /data/a && echo two > /data/sub/b && sleep 1000"))
    ok(d.docker("exec", name, "sh", "-c", "while [ ! -f /data/sub/b ]; do sleep 0.05; done"))
    if not running:
        ok(d.docker("stop", "-t", "0", name))
    # out: a file, a directory, a directory's contents (trailing /.)
    ok(d.docker("cp", f"{name}:/data/a", str(workdir / "a.txt")))
    assert (workdir / "a.txt").read_text() == "one\n"
    ok(d.docker("cp", f"{name}:/data", str(workdir / "copy")))
    assert (workdir / "copy" / "sub" / "b").read_text() == "two\n"
    (workdir / "contents").mkdir()
    ok(d.docker("cp", f"{name}:/data/.", str(workdir / "contents")))
    assert sorted(os.listdir(workdir / "contents")) == ["a", "sub"]
    # in: a file to a dir, a file to a new name, a directory
    (workdir / "in.txt").write_text("hello\n")
    (workdir / "tree" / "x").mkdir(parents=True)
    (workdir / "tree" / "x" / "y").write_text("deep\n")
    ok(d.docker("cp", str(workdir / "in.txt"), f"{name}:/tmp/"))
    ok(d.docker("cp", str(workdir / "in.txt"), f"{name}:/tmp/renamed"))
    ok(d.docker("cp", str(workdir / "tree"), f"{name}:/tmp/tree"))
    r = d.docker("cp", f"{name}:/nonexistent", str(workdir / "z"))
    assert r.returncode != 0 and "Could not find the file /nonexistent" in r.stderr, r
    if running:  # binds and volumes are seen as the container sees them
        ok(d.docker("cp", str(workdir / "in.txt"), f"{name}:/vol/"))
        assert (workdir / "vol" / "in.txt").read_text() == "hello\n"
    else:
        ok(d.docker("start", name))
    out = ok(d.docker("exec", name, "sh", "-c", "cat /tmp/in.txt /tmp/renamed /tmp/tree/x/y; stat -c %u /tmp/in.txt"))
    assert out == "hello\nhello\ndeep\n0\n"
    ok(d.docker("rm", "-f", name))
    assert [x for x in d.snapshot().leaks_since(before) if not x.startswith("cgroup ")] == []


def test_docker_py_archive_and_stat(clean_daemon, name):
    import io
    import tarfile

    d = clean_daemon
    ctr = d.api().containers.run("busybox", "sleep 1000", name=name, detach=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("note.txt")
        ti.size, ti.uid, ti.mode = 3, 1234, 0o640
        tf.addfile(ti, io.BytesIO(b"hi\n"))
    assert ctr.put_archive("/tmp", buf.getvalue()) is True
    bits, st = ctr.get_archive("/tmp/note.txt")
    assert st["name"] == "note.txt" and st["size"] == 3 and st["mode"] == 0o640
    with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tf:
        m = tf.getmember("note.txt")
        assert tf.extractfile(m).read() == b"hi\n" and m.uid == 0  # owner rewritten without copyUIDGID
    _, st = ctr.get_archive("/tmp")
    assert st["mode"] == (1 << 31) | (1 << 20) | 0o777, st  # Go FileMode: dir, sticky, rwxrwxrwx
    import docker.errors
    with pytest.raises(docker.errors.NotFound):
        ctr.get_archive("/nope")
    with pytest.raises(docker.errors.NotFound):
        ctr.put_archive("/nope", buf.getvalue())
    with pytest.raises(docker.errors.APIError) as exc:
        ctr.put_archive("/tmp", b"not a tar at all" * 64)
    assert exc.value.response.status_code == 400
    ctr.remove(force=True)


def test_never_started_container(clean_daemon, name, workdir):
    d = clean_daemon
    before = d.snapshot()
    ok(d.docker("create", "--name", name, "busybox", "true"))
    assert ok(d.docker("diff", name)) == ""
    (workdir / "f").write_text("created\n")
    ok(d.docker("cp", str(workdir / "f"), f"{name}:/f"))
    ok(d.docker("cp", f"{name}:/f", str(workdir / "back")))
    assert (workdir / "back").read_text() == "created\n"
    assert ok(d.docker("diff", name)) == "A /f\n"
    ok(d.docker("export", "-o", str(workdir / "e.tar"), name))
    ok(d.docker("rm", name))
    assert [x for x in d.snapshot().leaks_since(before) if not x.startswith("cgroup ")] == []


def test_cp_hostile_symlinks_stay_inside(clean_daemon, name, workdir):
    """Symlinks inside the container that point at host paths lead into the container's tree."""
    d = clean_daemon
    with open("/etc/passwd", "rb") as f:
        host_passwd = f.read()
    ok(d.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                "echo container-secret > /secret; ln -s /etc/passwd /tmp/pw; ln -s ../../../../../../etc /tmp/up;"
                " ln -s /proc/1/root/etc /tmp/magic; touch /ready; sleep 1000"))
    ok(d.docker("exec", name, "sh", "-c", "while [ ! -f /ready ]; do sleep 0.05; done"))
    # Out: -L follows the link, but inside the container.
    ok(d.docker("cp", "-L", f"{name}:/tmp/pw", str(workdir / "pw")))
    assert (workdir / "pw").read_bytes() != host_passwd and b"root:" in (workdir / "pw").read_bytes()
    ok(d.docker("cp", f"{name}:/tmp/up/passwd", str(workdir / "pw2")))
    assert (workdir / "pw2").read_bytes() == (workdir / "pw").read_bytes()
    # In: writing through the links lands in the container's /etc, never the host's.
    (workdir / "passwd").write_text("evil\n")
    for dest in ("/tmp/pw", "/tmp/up/passwd", "/tmp/up/"):
        d.docker("cp", str(workdir / "passwd"), f"{name}:{dest}")
        with open("/etc/passwd", "rb") as f:
            assert f.read() == host_passwd
    assert ok(d.docker("exec", name, "cat", "/etc/passwd")) == "evil\n"
    r = d.docker("cp", str(workdir / "passwd"), f"{name}:/tmp/magic/")  # magic links are refused
    assert r.returncode != 0, r
    with open("/etc/passwd", "rb") as f:
        assert f.read() == host_passwd
    # The same on the stopped container (its rootfs mounted on the host for the copy).
    ok(d.docker("stop", "-t", "0", name))
    ok(d.docker("cp", "-L", f"{name}:/tmp/pw", str(workdir / "pw3")))
    assert (workdir / "pw3").read_text() == "evil\n"
    (workdir / "passwd").write_text("evil2\n")
    ok(d.docker("cp", str(workdir / "passwd"), f"{name}:/tmp/up/"))
    with open("/etc/passwd", "rb") as f:
        assert f.read() == host_passwd
    ok(d.docker("cp", f"{name}:/etc/passwd", str(workdir / "pw4")))
    assert (workdir / "pw4").read_text() == "evil2\n"


def test_dockyard_cp(clean_daemon, name, workdir):
    import io
    import tarfile

    d = clean_daemon
    ok(d.docker("run", "-d", "--name", name, "busybox", "sh", "-c", "mkdir -p /d/s && echo 1 > /d/s/f && sleep 1000"))
    ok(d.docker("exec", name, "sh", "-c", "while [ ! -f /d/s/f ]; do sleep 0.05; done"))
    (workdir / "src").mkdir()
    (workdir / "src" / "g").write_text("2\n")
    ok(d.cli("cp", str(workdir / "src"), f"{name}:/d/"))          # dir into an existing dir
    ok(d.cli("cp", str(workdir / "src") + "/.", f"{name}:/new"))  # contents into a new dir
    ok(d.cli("cp", str(workdir / "src" / "g"), f"{name}:/d/renamed"))  # file to a new name
    out = ok(d.docker("exec", name, "cat", "/d/src/g", "/new/g", "/d/renamed"))
    assert out == "2\n2\n2\n"
    ok(d.cli("cp", f"{name}:/d", str(workdir / "out")))           # dir to a new name
    assert (workdir / "out" / "s" / "f").read_text() == "1\n"
    ok(d.cli("cp", f"{name}:/d/s/f", str(workdir / "out")))       # file into an existing dir
    assert (workdir / "out" / "f").read_text() == "1\n"
    tar = ok(d.cli("cp", f"{name}:/d/s", "-", text=False))         # tar on stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        assert sorted(tf.getnames()) == ["s", "s/f"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("piped")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"p!\n"))
    ok(d.cli("cp", "-", f"{name}:/tmp", input=buf.getvalue()))     # tar on stdin
    assert ok(d.docker("exec", name, "cat", "/tmp/piped")) == "p!\n"
    r = d.cli("cp", f"{name}:/nope", str(workdir), text=True)
    assert r.returncode == 1 and "Could not find the file /nope" in r.stderr, r


def test_diff_export_commit(clean_daemon, name, workdir):
    import io
    import tarfile

    d = clean_daemon
    ok(d.docker("run", "--name", name, "busybox", "sh", "-c",
                "echo x > /tmp/new; rm /bin/ls; echo extra >> /etc/passwd"))
    lines = ok(d.docker("diff", name)).splitlines()
    assert lines == ["C /bin", "D /bin/ls", "C /etc", "C /etc/passwd", "C /tmp", "A /tmp/new"], lines
    assert ok(d.cli("diff", name)).splitlines() == lines
    # A container that changed nothing shows nothing (the engine's /etc files are not changes).
    ok(d.docker("run", "--name", name + "-quiet", "busybox", "true"))
    assert ok(d.docker("diff", name + "-quiet")) == ""
    # export: the flattened rootfs, as the container left it
    ok(d.docker("export", "-o", str(workdir / "docker.tar"), name))
    ok(d.cli("export", "-o", str(workdir / "dockyard.tar"), name))
    for t in ("docker.tar", "dockyard.tar"):
        with tarfile.open(workdir / t) as tf:
            names = set(tf.getnames())
            assert {"tmp/new", "bin/sh", "etc/passwd"} <= names and "bin/ls" not in names, t
            assert tf.extractfile("tmp/new").read() == b"x\n"
    # commit with the docker CLI: a change, a message; the image runs and has the change
    img = f"{name}-img:v1"
    iid = ok(d.docker("commit", "-c", "ENV COMMITTED=yes", "-m", "msg", "-a", "me", name, img)).strip()
    assert iid.startswith("sha256:")
    ins = d.api().images.get(img).attrs
    cid = d.api().containers.get(name).attrs["Image"]
    assert ins["Parent"] == cid and ins["Comment"] == "msg" and ins["Author"] == "me"
    assert "COMMITTED=yes" in ins["Config"]["Env"]
    out = ok(d.docker("run", "--rm", img, "sh", "-c", "cat /tmp/new; ls /bin/ls 2>&1; echo $COMMITTED"))
    assert out.splitlines()[0] == "x" and "No such file" in out and out.splitlines()[-1] == "yes", out
    # The engine's placeholders stay out of the layer (the committed image has no /etc/hosts).
    ok(d.docker("create", "--name", name + "-c", img))
    tar = ok(d.docker("export", name + "-c", text=False))
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        assert "etc/hosts" not in tf.getnames() and "tmp/new" in tf.getnames()
    # docker-py, on a running container (paused for the commit), and dockyard commit
    ctr = d.api().containers.run("busybox", "sh -c 'echo live > /live; sleep 1000'", name=name + "-run", detach=True)
    ok(d.docker("exec", name + "-run", "sh", "-c", "while [ ! -s /live ]; do sleep 0.05; done"))
    with tarfile.open(fileobj=io.BytesIO(ok(d.docker("export", name + "-run", text=False)))) as tf:
        assert tf.extractfile("live").read() == b"live\n" and not any(n.startswith("proc/") for n in tf.getnames())
    image = ctr.commit(repository=f"{name}-py", tag="t", changes=["CMD [\"cat\", \"/live\"]"])
    assert d.api().containers.run(image.id, remove=True).decode() == "live\n"
    assert ctr.reload() or ctr.status == "running"
    out = ok(d.cli("commit", "-c", "LABEL k=v", name, f"{name}-cli")).strip()
    assert d.api().images.get(f"{name}-cli:latest").id == out and \
        d.api().images.get(out).labels.get("k") == "v"
    r = d.cli("commit", "nosuch-" + name, text=True)
    assert r.returncode == 1 and "No such container" in r.stderr, r


def test_docker_stats_all_running(clean_daemon, name):
    d = clean_daemon
    ok(d.docker("run", "-d", "--name", name, "busybox", "sleep", "1000"))
    out = ok(d.docker("stats", "--no-stream", "--format", "{{.Name}}"))
    assert name in out.split(), out
    assert name in ok(d.cli("stats", "--no-stream", "--format", "{{.Name}}"))


# -- pure parts ---------------------------------------------------------------------------------

def test_go_file_mode():
    import stat

    from dockyard.engine.copy import go_file_mode
    assert go_file_mode(stat.S_IFDIR | 0o755) == 2147484141  # the value docker's CLI expects
    assert go_file_mode(stat.S_IFREG | 0o644) == 0o644
    assert go_file_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert go_file_mode(stat.S_IFREG | stat.S_ISUID | 0o755) == (1 << 23) | 0o755


def test_hide_engine_files():
    from dockyard.engine.layers import hide_engine_files
    placeholders = [{"Path": "/etc", "Kind": 0}] + [{"Path": p, "Kind": 1} for p in
                                                    ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")]
    assert hide_engine_files(placeholders) == []
    passwd = {"Path": "/etc/passwd", "Kind": 0}
    assert hide_engine_files(placeholders + [passwd]) == [{"Path": "/etc", "Kind": 0}, passwd]
    # A user who replaced /etc/hosts in the image layer changed it (Kind 0): that shows.
    assert hide_engine_files([{"Path": "/etc/hosts", "Kind": 0}]) == [{"Path": "/etc/hosts", "Kind": 0}]


def test_stats_row_matches_docker_arithmetic():
    from dockyard.cli.containers import bytes_size, stats_row
    s = {"id": "a" * 64, "name": "/web", "read": "2026-01-01T00:00:01Z",
         "cpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000}, "system_cpu_usage": 10_000_000_000,
                       "online_cpus": 2},
         "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000_000}, "system_cpu_usage": 8_000_000_000},
         "memory_stats": {"usage": 3 << 20, "limit": 64 << 20, "stats": {"total_inactive_file": 1 << 20}},
         "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 0}},
         "blkio_stats": {"io_service_bytes_recursive": [{"op": "read", "value": 4096}, {"op": "write", "value": 0}]},
         "pids_stats": {"current": 3}}
    row = stats_row("web", s)
    assert row == {"ID": "a" * 12, "Container": "web", "Name": "web", "CPUPerc": "100.00%",
                   "MemUsage": "2MiB / 64MiB", "MemPerc": "3.12%", "NetIO": "1.5kB / 0B",
                   "BlockIO": "4.1kB / 0B", "PIDs": "3"}
    assert bytes_size(1433) == "1.399KiB"


def test_split_container_path():
    from dockyard.cli.copy import split_container_path
    assert split_container_path("web:/etc/hosts") == ("web", "/etc/hosts")
    assert split_container_path("./a:b") == (None, "./a:b")
    assert split_container_path("/tmp/x") == (None, "/tmp/x")
    assert split_container_path("-") == (None, "-")
