"""The real clients against dockyard: docker CLI 28, docker-py and our own CLI, as black boxes."""

import json
import re

import pytest
from e2e_util import ok, poll

pytestmark = pytest.mark.privileged


def test_docker_run_rm_echo(clean_daemon):
    r = clean_daemon.docker("run", "--rm", "busybox", "echo", "hello")
    assert ok(r) == "hello\n"


def test_dockyard_run_rm_echo(clean_daemon):
    r = clean_daemon.cli("run", "--rm", "busybox", "echo", "hello")
    assert ok(r) == "hello\n"


def test_dockerpy_run_remove(clean_daemon):
    client = clean_daemon.api()
    assert client.containers.run("busybox", "echo hello", remove=True) == b"hello\n"


def test_docker_lifecycle(clean_daemon, name):
    d = clean_daemon
    # PID 1 ignores SIGTERM unless it traps it: the trap makes the recorded exit code ours (7).
    cid = ok(d.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                      "trap 'exit 7' TERM; echo started; while true; do sleep 0.1; done")).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid), cid

    ps = ok(d.docker("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.Status}}"))
    assert any(line.startswith(f"{cid} {name} Up") for line in ps.splitlines()), ps
    assert cid[:12] in ok(d.docker("ps", "-q")).split()

    assert poll(lambda: "started" in ok(d.docker("logs", name))), d.docker("logs", name)

    info = json.loads(ok(d.docker("inspect", name)))[0]
    assert info["Id"] == cid and info["Name"] == "/" + name
    assert info["Config"]["Image"] == "busybox" and info["State"]["Running"] is True
    assert info["State"]["Pid"] > 0

    assert ok(d.docker("stop", "-t", "10", name)).strip() == name
    out = ok(d.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}", name))
    assert out.strip() == "exited 7 false"
    assert cid[:12] not in ok(d.docker("ps", "-q")).split()

    assert ok(d.docker("rm", name)).strip() == name
    assert name not in ok(d.docker("ps", "-a", "--format", "{{.Names}}")).split()
    r = d.docker("inspect", name)
    assert r.returncode == 1 and "No such" in r.stderr


def test_docker_images_and_image_inspect(clean_daemon):
    d = clean_daemon
    rows = ok(d.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")).splitlines()
    assert any(r.startswith("busybox:latest ") for r in rows), rows
    info = json.loads(ok(d.docker("image", "inspect", "busybox")))[0]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", info["Id"])
    assert "busybox:latest" in info["RepoTags"]
    assert info["Os"] == "linux" and info["RootFS"]["Type"] == "layers"


def test_docker_volume_ls(clean_daemon, name):
    d = clean_daemon
    assert ok(d.docker("volume", "create", name)).strip() == name
    assert name in ok(d.docker("volume", "ls", "-q")).split()
    info = json.loads(ok(d.docker("volume", "inspect", name)))[0]
    assert info["Name"] == name and info["Driver"] == "local"
    assert ok(d.docker("volume", "rm", name)).strip() == name
    assert name not in ok(d.docker("volume", "ls", "-q")).split()


def test_docker_version_and_info(clean_daemon):
    d = clean_daemon
    out = ok(d.docker("version", "--format", "{{.Server.APIVersion}}"))
    assert re.fullmatch(r"1\.\d+", out.strip()), out
    ok(d.docker("info", "--format", "{{.Containers}}"))


def test_dockerpy_lifecycle(clean_daemon, name):
    client = clean_daemon.api()
    c = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2; exit 4"], name=name, detach=True)
    assert c.wait(timeout=30)["StatusCode"] == 4
    assert c.logs(stdout=True, stderr=False) == b"out\n"
    assert c.logs(stdout=False, stderr=True) == b"err\n"
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 4
    c.remove()
    assert name not in [x.name for x in client.containers.list(all=True)]


def test_dockyard_lifecycle(clean_daemon, name, tmp_path):
    d = clean_daemon
    cid = ok(d.cli("run", "-d", "--name", name, "busybox", "sh", "-c",
                   "trap 'exit 7' TERM; echo started; while true; do sleep 0.1; done")).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid), cid
    assert name in ok(d.cli("ps", "-a", "--format", "{{.Names}}")).split()
    assert poll(lambda: "started" in ok(d.cli("logs", name)))
    assert ok(d.cli("stop", name)).strip() == name
    assert ok(d.cli("inspect", "-f", "{{.State.ExitCode}}", name)).strip() == "7"
    assert ok(d.cli("rm", name)).strip() == name
    assert name not in ok(d.cli("ps", "-a", "--format", "{{.Names}}")).split()

    assert "busybox" in ok(d.cli("images", "--format", "{{.Repository}}")).split()
    ok(d.cli("volume", "create", name))
    assert name in ok(d.cli("volume", "ls", "-q")).split()
    ok(d.cli("volume", "rm", name))

    ok(d.cli("tag", "busybox", f"{name}:saved"))
    ok(d.cli("save", "-o", str(tmp_path / "s.tar"), f"{name}:saved"))
    ok(d.cli("rmi", f"{name}:saved"))
    assert f"{name}:saved" in ok(d.cli("load", "-i", str(tmp_path / "s.tar")))
    ok(d.cli("rmi", f"{name}:saved"))
