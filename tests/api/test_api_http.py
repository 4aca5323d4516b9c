"""The HTTP layer (framing, routing, hijack, streams, error JSON) driven by the real docker CLI and
docker-py, against the real Server over an in-memory fake engine (see fake_engine.py)."""

import json
import os
import re
import socket
import time

import docker
import pytest

from dockyard import errdefs
from dockyard.api.containers import filter_containers, frame
from dockyard.api.server import parse_bool, parse_filters, status_of



def read_response(s: socket.socket, until=b"\r\n\r\n") -> bytes:
    buf = b""
    while until not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def http(d, method, path, body=b"", headers=()):
    s = d.raw()
    try:
        hs = "".join(f"{k}: {v}\r\n" for k, v in headers)
        if body and not any(k.lower() == "transfer-encoding" for k, _ in headers):
            hs += f"Content-Length: {len(body)}\r\n"
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{hs}\r\n".encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.fixture
def busybox(fake, tmp_path):
    """busybox:latest imported through the CLI (`docker import` = POST /images/create?fromSrc=-)."""
    import rootfs

    tar = rootfs.make_rootfs_tar(str(tmp_path / "bb.tar"))
    r = fake.docker("import", tar, "busybox")
    assert r.stdout.decode().startswith("sha256:")
    return fake


# -- pure helpers ---------------------------------------------------------------------------------

def test_bool_and_filters_parsing():
    assert [parse_bool(v) for v in ("1", "True", "true", "yes")] == [True] * 4
    assert [parse_bool(v) for v in ("", "0", "False", "no", "none", " NONE ")] == [False] * 6
    assert parse_filters('{"label":{"a=b":true,"k":true},"status":{"exited":true}}') == \
        {"label": ["a=b", "k"], "status": ["exited"]}
    assert parse_filters('{"id": ["abc"]}') == {"id": ["abc"]}
    assert parse_filters("") == {}
    with pytest.raises(errdefs.InvalidArgument):
        parse_filters("{nope")


def test_status_mapping():
    cases = {errdefs.NotFound: 404, errdefs.AlreadyExists: 409, errdefs.Conflict: 409,
             errdefs.InvalidArgument: 400, errdefs.NotModified: 304, errdefs.Forbidden: 403,
             errdefs.Unavailable: 503, errdefs.Internal: 500, ValueError: 500}
    assert {k: status_of(k("x")) for k in cases} == cases


def test_render_time_helpers():
    from dockyard.api import render
    from dockyard.engine import Container, State

    assert [render.human_duration(s) for s in (0.5, 1, 59, 60, 150, 3599, 5400, 86400, 3 * 86400, 20 * 86400)] == [
        "Less than a second", "1 second", "59 seconds", "About a minute", "2 minutes", "59 minutes",
        "2 hours", "24 hours", "3 days", "2 weeks"]
    assert render.to_unix("2026-01-01T00:00:01.123456789Z") == 1767225601
    assert render.to_unix("0001-01-01T00:00:00Z") == 0
    assert render.rfc3339_nano_fixed(1767225601_000000050) == "2026-01-01T00:00:01.000000050Z"
    c = Container("a" * 64, "/x", "busybox", "sha256:" + "b" * 64, "2026-01-01T00:00:00Z", {}, {},
                  state=State("exited", 0, 3, finished_at="2026-01-01T00:00:00Z"))
    assert render.status_text(c, now=1767225600 + 120) == "Exited (3) 2 minutes ago"
    assert render.container_inspect(c)["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {}}


def test_frame_layout():
    assert frame("stderr", b"hi") == b"\x02\x00\x00\x00\x00\x00\x00\x02hi"


# -- wire behaviour -------------------------------------------------------------------------------

def test_ping_versioned_and_head(fake):
    st, hs, body = http(fake, "GET", "/v1.44/_ping")
    assert (st, body) == (200, b"OK")
    assert hs["api-version"] == "1.44" and hs["ostype"] == "linux"
    assert re.fullmatch(r"Docker/.+\s\((.+)\)", hs["server"]).group(1) == "linux"  # Go client's getDockerOS
    assert "dockyard" in hs["server"]
    st, hs, body = http(fake, "HEAD", "/_ping")
    assert (st, body, hs["content-length"]) == (200, b"", "0")


def test_errors_are_one_json_line(fake):
    st, hs, body = http(fake, "GET", "/v1.44/no/such/route")
    assert st == 404 and hs["content-type"] == "application/json"
    assert json.loads(body) == {"message": "page not found"}
    st, _, body = http(fake, "GET", "/containers/nosuch/json")
    assert (st, json.loads(body)) == (404, {"message": "No such container: nosuch"})
    st, _, body = http(fake, "POST", "/volumes/create", b"{bad json", [("Content-Type", "application/json")])
    assert st == 400 and "invalid JSON" in json.loads(body)["message"]
    st, _, body = http(fake, "GET", "/v1.12/version")
    assert st == 400 and "too old" in json.loads(body)["message"]
    st, _, body = http(fake, "GET", "/containers/json?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D")
    assert st == 400 and json.loads(body)["message"] == "invalid filter 'bogus'"


def test_keepalive_pipelined_and_chunked_body(fake):
    s = fake.raw()
    try:
        body = json.dumps({"Name": "v1", "Labels": {"k": "v"}}).encode()
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:5], body[5:])) + b"0\r\n\r\n"
        s.sendall(b"POST /volumes/create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
                  + b"GET /volumes/v1 HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        deadline = time.time() + 5
        while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"}"):
            assert time.time() < deadline, data
            data += s.recv(65536)
    finally:
        s.close()
    first, second = data.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"201") and second.startswith(b"200")
    assert json.loads(second.partition(b"\r\n\r\n")[2])["Labels"] == {"k": "v"}


def test_wait_headers_flush_before_exit_and_disconnect_is_harmless(busybox):
    d = busybox
    cid = json.loads(http(d, "POST", "/containers/create", json.dumps(
        {"Image": "busybox", "Cmd": ["sleep", "0.3"]}).encode(), [("Content-Type", "application/json")])[2])["Id"]
    s = d.raw()
    s.sendall(f"POST /v1.44/containers/{cid}/wait?condition=next-exit HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = read_response(s)
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower()  # before start was sent
    gone = d.raw()  # a second waiter that walks away (docker run -d does this)
    gone.sendall(f"POST /containers/{cid}/wait HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    read_response(gone)
    gone.close()
    assert http(d, "POST", f"/containers/{cid}/start")[0] == 204
    assert http(d, "POST", f"/containers/{cid}/start")[0] == 304
    body = read_response(s, b"}")
    assert b'{"StatusCode": 137, "Error": null}' in body or b'"StatusCode": 0' in body
    s.close()
    st, _, body = http(d, "POST", f"/containers/{cid}/wait?condition=bogus")
    assert st == 400 and json.loads(body)["message"] == 'invalid condition: "bogus"'


# -- the real docker CLI --------------------------------------------------------------------------

def test_cli_version_info_images_volumes(busybox):
    d = busybox
    out = d.docker("version").stdout.decode()
    assert "Dockyard Engine" in out and "1.44" in out
    assert "Server Version: 0.1.0" in d.docker("info").stdout.decode()
    imgs = d.docker("images").stdout.decode()
    assert "busybox" in imgs and "latest" in imgs
    assert d.docker("image", "inspect", "-f", "{{.Os}}", "busybox").stdout == b"linux\n"
    d.docker("tag", "busybox", "localhost:5000/bb:1")
    assert "localhost:5000/bb" in d.docker("images").stdout.decode()
    d.docker("volume", "create", "--label", "x=y", "data1")
    assert "data1" in d.docker("volume", "ls").stdout.decode()
    assert d.docker("volume", "inspect", "-f", "{{.Labels.x}}", "data1").stdout == b"y\n"
    d.docker("volume", "rm", "data1")
    r = d.docker("volume", "rm", "data1", check=False)
    assert r.returncode == 1 and "no such volume" in r.stderr.decode()
    r = d.docker("inspect", "nosuchthing", check=False)
    assert r.returncode == 1 and "No such object: nosuchthing" in r.stderr.decode()
    assert d.docker("network", "ls").stdout.decode().count("local") == 3
    assert d.docker("system", "prune", "-f").returncode == 0


def test_cli_run_attached_and_stdin(busybox):
    d = busybox
    r = d.docker("run", "--rm", "busybox", "echo", "hello", "world")
    assert r.stdout == b"hello world\n"
    r = d.docker("run", "-i", "--rm", "busybox", "cat", input=b"from stdin\n")
    assert r.stdout == b"from stdin\n"
    r = d.docker("run", "--name", "w", "busybox", "warn", "x", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"err:x\n")
    assert d.docker("logs", "w").stderr == b"err:x\n"
    assert d.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout.decode().startswith("w Exited (0)")
    r = d.docker("run", "--rm", "busybox", "nosuch", check=False)
    assert r.returncode == 127 and "executable file not found" in r.stderr.decode()
    r = d.docker("run", "--rm", "nosuchimage", check=False)
    assert r.returncode == 125 and "pull access denied for nosuchimage" in r.stderr.decode()


def test_cli_save_load_pull(busybox, tmp_path):
    d = busybox
    out = str(tmp_path / "s.tar")
    d.docker("save", "-o", out, "busybox")
    assert os.path.getsize(out) > 3 << 20
    r = d.docker("load", "-i", out)
    assert r.stdout == b"Loaded image: busybox\n"
    r = d.docker("pull", "busybox")
    assert "Image is up to date for busybox:latest" in r.stdout.decode()


# -- docker-py --------------------------------------------------------------------------------------

def test_docker_py_run_logs_attach(busybox):
    c = docker.DockerClient(base_url=busybox.host, timeout=30)
    try:
        assert c.version()["ApiVersion"] == "1.44"
        assert c.ping() is True
        assert c.containers.run("busybox", "echo hello", remove=True) == b"hello\n"
        ctr = c.containers.run("busybox", "sleep 30", detach=True)
        assert c.containers.get(ctr.id).status == "running"
        assert [x.id for x in c.containers.list(filters={"id": ctr.id[:8]})] == [ctr.id]
        ctr.stop(timeout=1)
        ctr.remove()
        with pytest.raises(docker.errors.NotFound):
            c.containers.get(ctr.id)
        with pytest.raises(docker.errors.ImageNotFound):
            c.images.pull("nosuch")
        # Hijacked attach: output must not be lost to the 101 race.
        ctr = c.containers.create("busybox", "echo attached")
        stream = c.api.attach(ctr.id, stream=True, logs=False)
        ctr.start()
        assert b"".join(stream) == b"attached\n"
        ctr.remove()
    finally:
        c.close()


def test_events_until_and_stubs(fake):
    st, hs, body = http(fake, "GET", f"/events?since=0&until={int(time.time())}")
    assert st == 200 and body == b"0\r\n\r\n"
    assert http(fake, "POST", "/swarm/leave?force=1")[0] == 503
    assert json.loads(http(fake, "POST", "/build/prune")[2]) == {"CachesDeleted": [], "SpaceReclaimed": 0}
    assert http(fake, "GET", "/plugins/x/json")[0] == 404
    assert http(fake, "DELETE", "/networks/bridge")[0] == 403


def test_container_list_rules(busybox):
    d = busybox
    eng = d.engine
    run = d.docker("run", "-d", "--label", "app=x", "busybox", "sleep", "30").stdout.decode().strip()
    d.docker("create", "--name", "idle", "busybox", "echo", "x")
    cs = eng.list(all=True)
    assert [c.id for c in filter_containers(eng, cs, False, -1, {})] == [run]
    assert [c.name for c in filter_containers(eng, cs, False, -1, {"status": ["created"]})] == ["/idle"]
    assert [c.id for c in filter_containers(eng, cs, True, -1, {"label": ["app=x"]})] == [run]
    assert [c.name for c in filter_containers(eng, cs, True, -1, {"name": ["^/idl"]})] == ["/idle"]
    assert len(filter_containers(eng, cs, False, 1, {})) == 1
    assert [c.id for c in filter_containers(eng, cs, True, -1, {"before": ["idle"]})] == [run]
    assert d.docker("ps", "-q", "--no-trunc").stdout.decode().split() == [run]
    top = json.loads(http(d, "GET", f"/containers/{run}/top")[2])
    assert top["Titles"][1] == "PID" and top["Processes"]
    d.docker("rm", "-f", run, "idle")
    assert d.docker("ps", "-aq").stdout == b""


def test_malformed_request_gets_400_and_server_lives_on(fake):
    s = fake.raw()
    try:
        s.sendall(b"NOT AN HTTP REQUEST\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 400") and b'"message": "bad request' in data
    assert http(fake, "GET", "/_ping")[0] == 200


def test_prune_until_keeps_newer_containers(busybox):
    d = busybox
    d.docker("create", "--name", "old1", "busybox", "true")
    r = d.docker("container", "prune", "-f", "--filter", "until=1h")
    assert "old1" not in r.stdout.decode()  # created just now: younger than 1h, kept
    assert d.docker("ps", "-aq").stdout.strip()
    assert d.docker("container", "prune", "-f", "--filter", "until=bogus", check=False).returncode == 1
    d.docker("container", "prune", "-f")
    assert d.docker("ps", "-aq").stdout == b""
