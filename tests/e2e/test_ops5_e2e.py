"""What the speed work of issue 3 changed, shown through the real clients: one-shot stats with a
real CPU baseline, `dockyard stats` asking for every container at once (pipelined), hijacked
streams that start as soon as the client read the 101 header, and the `dockyard` launcher."""

import os
import subprocess
import sys
import sysconfig
import time

import pytest
from e2e_util import ok
from test_ops3_e2e import _running, pty_client  # noqa: F401 - pty_client is a fixture
from test_ops4_e2e import _prompt

pytestmark = pytest.mark.privileged
DOCKYARD = os.path.join(sysconfig.get_path("scripts"), "dockyard")


def _busy(d, name):
    ok(d.docker("run", "-d", "--name", name, "busybox", "sh", "-c", "while :; do :; done"))


def test_one_shot_stats_answer_at_once_with_cpu_since_start(clean_daemon, name):
    d = clean_daemon
    _busy(d, name)
    time.sleep(0.5)
    api = d.api().api
    s = api.stats(name, stream=False, one_shot=True)
    pre, cur = s["precpu_stats"], s["cpu_stats"]
    # The baseline is the container's start: no CPU used yet, the host's CPU time then.
    assert pre["cpu_usage"]["total_usage"] == 0 and 0 < pre["system_cpu_usage"] < cur["system_cpu_usage"], s
    assert s["preread"] == d.api().containers.get(name).attrs["State"]["StartedAt"]
    # A busy loop since start: ~one CPU of the host's, averaged since then (generous bounds).
    cpu_delta = cur["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
    sys_delta = cur["system_cpu_usage"] - pre["system_cpu_usage"]
    share = cpu_delta / sys_delta * cur["online_cpus"]
    assert 0.5 < share < 1.5, (share, s)
    # The next one-shot sample starts from this one.
    s2 = api.stats(name, stream=False, one_shot=True)
    assert s2["preread"] == s["read"] and s2["precpu_stats"] == cur
    # moby's documented stream=0 still samples twice, a second apart.
    from dockyard.engine.restart import parse_rfc3339

    s3 = api.stats(name, stream=False)
    assert parse_rfc3339(s3["read"]) - parse_rfc3339(s3["preread"]) >= 0.9, s3


def test_dockyard_stats_no_stream_all_at_once(clean_daemon, name):
    d = clean_daemon
    names = [f"{name}-{i}" for i in range(6)]
    _busy(d, names[0])
    for n in names[1:]:
        ok(d.cli("run", "-d", "--name", n, "--memory", "32m", "busybox", "sleep", "1000"))
    out = ok(d.cli("stats", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}} {{.MemUsage}}", text=True))
    rows = {line.split()[0]: line.split() for line in out.splitlines()}
    assert set(names) <= set(rows), out
    assert float(rows[names[0]][1].rstrip("%")) > 50, out  # the busy one, since its start
    assert all(rows[n][-1] == "32MiB" for n in names[1:]), out
    # A missing container among them: docker's message, exit 1, the others still asked.
    r = d.cli("stats", "--no-stream", names[1], "nosuch-" + name, names[2], text=True)
    assert r.returncode == 1 and "No such container: nosuch-" + name in r.stderr, r


def test_dockyard_stats_streams_a_frame_a_second(clean_daemon, name):
    """Without --no-stream: the screen is redrawn about once a second, each frame's CPU % from
    the previous frame's sample (one-shot requests, the daemon keeps the last one)."""
    d = clean_daemon
    _busy(d, name)
    p = subprocess.Popen([DOCKYARD, "-H", d.host, "stats", "--format", "{{.Name}} {{.CPUPerc}}", name],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=3.5)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    frames = [f for f in out.decode().split("\033[2J\033[H") if f.strip()]
    assert 2 <= len(frames) <= 5, (frames, err)  # not a busy loop, and more than one frame
    for f in frames:
        nm, cpu = f.split()
        assert nm == name and float(cpu.rstrip("%")) > 50, frames


def test_pipelined_requests_keep_order_and_errors(clean_daemon):
    """Client.get_many (all requests written at once): answers in order, an error in its own
    slot, the plain-text and JSON bodies decoded as single requests decode them."""
    from dockyard.cli.client import APIError, Client

    c = Client(clean_daemon.host)
    reqs = [("/_ping", None), ("/containers/nosuch/json", None), ("/version", None)] * 20
    got = c.get_many(reqs)
    assert len(got) == 60
    for i in range(0, 60, 3):
        assert got[i] == b"OK"
        assert isinstance(got[i + 1], APIError) and got[i + 1].status == 404, got[i + 1]
        assert got[i + 2]["ApiVersion"] == c.get("/version")["ApiVersion"]


def test_exec_output_never_lost_right_after_the_header(clean_daemon, name):
    """docker-py reads the stream from beneath http.client's buffered reader: bytes that arrive
    with the 101 header are lost. The daemon waits until the client has read the header (not a
    fixed 20 ms), so a command that prints at once must still come back whole, every time."""
    d = clean_daemon
    ok(d.docker("run", "-d", "--name", name, "busybox", "sleep", "1000"))
    ctr = d.api().containers.get(name)
    for i in range(30):
        r = ctr.exec_run(["echo", f"line-{i}"])
        assert (r.exit_code, r.output) == (0, f"line-{i}\n".encode()), (i, r)
    # and attach-style streams of the real CLI (Go: reads the header unbuffered)
    for i in range(5):
        assert ok(d.docker("exec", name, "echo", f"cli-{i}")).strip() == f"cli-{i}"


@pytest.mark.parametrize("typed", [b"\x10\x11", b"echo pas''ted\r\x10\x11 and more"], ids=["keys", "pasted"])
def test_run_it_detach_right_after_the_keys(clean_daemon, name, pty_client, typed):
    """The client must know it detached before the daemon, which has the keys, ends the stream:
    else it waits for an exit that never comes (1 run in 2 once the daemon answered fast).
    Pasted: the keys inside one read, with input after them (which the daemon drops)."""
    d = clean_daemon
    for i in range(5):
        n = f"{name}-{i}"
        t = pty_client([DOCKYARD, "-H", d.host, "run", "-it", "--name", n, "busybox", "sh"])
        _prompt(t)
        t.write(b"echo rea''dy\r")
        assert t.read_until(b"ready"), t.out
        t.write(typed)
        assert t.wait() == 0, t.out
        assert _running(d, n)
        ok(d.cli("rm", "-f", n))


def test_dockyard_command_is_the_site_less_launcher():
    """setup.sh replaces pip's console script with dockyard/cli/launcher.py's launcher: no
    `site` on the CLI's path, the real one for the daemon."""
    with open(DOCKYARD) as f:
        text = f.read()
    from dockyard.cli import launcher

    assert text == launcher.text(text.split()[0][2:]), "re-run ./setup.sh --install-only"
    r = subprocess.run([DOCKYARD, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "run" in r.stdout
    # The launcher's own start leaves `site` out; the daemon's start runs it.
    probe = text.replace("from dockyard.cli.entry import main\nsys.exit(main())\n",
                         "print('site' in sys.modules, sorted(sys.modules).count('click'))\n")
    for argv, want in ((["ps"], "False 0"), (["daemon"], "True 0")):
        r = subprocess.run([sys.executable, "-S", "-c", probe.split("\n", 1)[1], *argv], capture_output=True, text=True)
        assert r.stdout.strip() == want, (argv, r)


def test_launcher_rewrites_only_when_changed(tmp_path):
    from dockyard.cli import launcher

    p = tmp_path / "dockyard"
    assert launcher.write(str(p)) is True
    assert os.access(p, os.X_OK) and p.read_text().startswith(f"#!{sys.executable} -S\n")
    assert launcher.write(str(p)) is False
    r = subprocess.run([str(p), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "Usage" in r.stdout, r
