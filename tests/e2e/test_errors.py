"""Exit codes as Docker defines them, and bad input that leaves nothing behind."""

import os

import pytest
from e2e_util import ok, poll

pytestmark = pytest.mark.privileged

CLIENTS = ["docker", "dockyard"]


def _client(d, which):
    return d.docker if which == "docker" else d.cli


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("args,code,message", [
    (["busybox", "sh", "-c", "exit 3"], 3, None),
    (["--bogus-flag", "busybox", "true"], 125, "bogus-flag"),
    (["nosuchimage:1", "true"], 125, "nosuchimage"),
    (["busybox", "/etc/passwd"], 126, "permission denied"),
    (["busybox", "nosuchcmd"], 127, "nosuchcmd"),
])
def test_exit_codes(clean_daemon, client, args, code, message):
    r = _client(clean_daemon, client)("run", "--rm", *args)
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    if message:
        assert message in r.stderr.lower(), r.stderr
        assert r.stderr.strip(), "an error needs a message"


def _bundles(d):
    p = os.path.join(d.data_root, "containers")
    return set(os.listdir(p)) if os.path.isdir(p) else set()


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("args", [
    ["nosuchimage:1", "true"],
    ["--bogus-flag", "busybox", "true"],
    ["busybox", "nosuchcmd"],
    ["busybox", "/etc/passwd"],
    ["--memory", "1k", "busybox", "true"],
    ["--cpuset-cpus", "99", "busybox", "true"],
    ["--workdir", "relative", "busybox", "true"],
    ["--name", "bad name!", "busybox", "true"],
    ["-u", "nosuchuser", "busybox", "true"],
], ids=lambda a: "_".join(a)[:40])
def test_bad_input_leaves_nothing(clean_daemon, client, args):
    d = clean_daemon
    before, bundles = d.snapshot(), _bundles(d)
    r = _client(d, client)("run", "--rm", *args)
    assert r.returncode in (125, 126, 127), (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert err, "an error needs a message"
    # --rm removal of a container whose start failed may finish just after the CLI returned.
    poll(lambda: not d.snapshot().leaks_since(before), timeout=5)
    assert d.snapshot().leaks_since(before) == []
    assert _bundles(d) == bundles


def test_api_bad_create_body(clean_daemon):
    d = clean_daemon
    before = d.snapshot()
    for body in ({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Memory": 1024}},
                 {"Image": "busybox", "Cmd": 42},
                 {"Cmd": ["true"]}):
        status, resp = d.json("POST", "/containers/create", body)
        assert 400 <= status < 500, (body, status, resp)
        assert isinstance(resp, dict) and resp.get("message"), resp
    status, _, raw = d.http("POST", "/containers/create", b"{not json", {"Content-Type": "application/json"})
    assert status == 400, raw
    assert d.snapshot().leaks_since(before) == []


def test_not_found_messages(clean_daemon):
    d = clean_daemon
    for args, text in ((["inspect", "nosuchthing"], "No such"), (["rm", "nosuchctr"], "No such container"),
                       (["logs", "nosuchctr"], "No such container"), (["rmi", "nosuchimage:1"], "No such image")):
        r = d.docker(*args)
        assert r.returncode == 1 and text in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_stop_and_start_states(clean_daemon, name):
    d = clean_daemon
    ok(d.docker("create", "--name", name, "busybox", "sleep", "30"))
    assert ok(d.docker("inspect", "-f", "{{.State.Status}}", name)).strip() == "created"
    ok(d.docker("start", name))
    r = d.docker("rm", name)
    assert r.returncode == 1 and ("stop" in r.stderr.lower() or "force" in r.stderr), r.stderr
    ok(d.docker("kill", name))
    assert ok(d.docker("wait", name)).strip() == "137"
    ok(d.docker("rm", name))
