"""cli/entry.py parses `exec` and `stats` without click: it must agree with click on every command
line it takes, and hand everything else to click."""

import os
import subprocess
import sys
import sysconfig

import pytest

from dockyard.cli import entry

DOCKYARD = os.path.join(sysconfig.get_path("scripts"), "dockyard")

EXEC_LINES = [
    ["web", "true"],
    ["-it", "web", "sh"],
    ["-i", "-t", "web", "sh", "-c", "echo hi; exit 3"],
    ["-d", "web", "sleep", "1"],
    ["-e", "A=1", "-eB=2", "--env", "C=3", "--env=D=4", "-e", "HOME", "web", "env"],
    ["-u", "1000:1000", "-w", "/tmp", "web", "id"],
    ["--user=nobody", "--workdir=/", "--privileged", "web", "id"],
    ["--detach-keys", "ctrl-x,x", "-it", "web", "sh"],
    ["-itu", "root", "web", "sh"],
    ["-tie", "X=-y", "web", "sh"],
    ["-e", "-notaflag", "web", "printenv"],
    ["web", "ls", "-la", "--color", "-e"],  # after CONTAINER everything is the command's
    ["-u", "0", "-u", "1", "web", "id"],  # the last one wins, as in click
    ["web", "-"],
]
STATS_LINES = [
    [], ["--no-stream"], ["-a", "--no-stream"], ["--all"], ["web", "--no-stream"],
    ["--no-trunc", "web", "db"], ["--format", "{{.Name}} {{.CPUPerc}}", "--no-stream"],
    ["--format={{json .}}", "-a", "web"], ["-", "web"],
]
# Forms the hand parser refuses: click then answers (help, usage errors, other flags).
REFUSED = [
    ["exec", "--help"], ["exec", "web"], ["exec"], ["exec", "-x", "web", "true"], ["exec", "--env-file", "f", "web", "true"],
    ["exec", "--", "web", "true"], ["exec", "-e"], ["exec", "--detach=true", "web", "true"],
    ["stats", "--help"], ["stats", "--format"], ["stats", "-q"], ["stats", "--no-stream=1"],
    ["ps"], ["run", "busybox", "true"], ["-D", "exec", "web", "true"], ["--tls", "stats"], ["-Hx", "stats"],
    ["image", "exec", "web", "true"],
]


def _click_params(cmd, args):
    from dockyard.cli.containers import exec_, stats

    command = {"exec": exec_, "stats": stats}[cmd]
    ctx = command.make_context(cmd, list(args))
    p = dict(ctx.params)
    p.pop("name", None)
    return p


def _norm(cmd, kw):
    """entry's keyword arguments in the shape of click's params (defaults filled in)."""
    if cmd == "exec":
        base = {"detach": False, "interactive": False, "tty": False, "env": (), "user": None, "workdir": None,
                "privileged": False, "detach_keys": ""}
        out = dict(base, **kw)
        out["env"], out["command"] = tuple(out["env"]), tuple(out["command"])
        return out
    out = dict({"all_": False, "no_stream": False, "no_trunc": False, "fmt": None}, **kw)
    out["containers"] = tuple(out["containers"])
    return out


@pytest.mark.parametrize("args", EXEC_LINES, ids=lambda a: " ".join(a))
def test_exec_lines_parse_as_click_parses_them(args):
    name, host, kw = entry.plan(["exec", *args])
    assert name == "exec"
    assert _norm("exec", kw) == _click_params("exec", args)


@pytest.mark.parametrize("args", STATS_LINES, ids=lambda a: " ".join(a) or "(none)")
def test_stats_lines_parse_as_click_parses_them(args):
    name, host, kw = entry.plan(["stats", *args])
    assert name == "stats"
    assert _norm("stats", kw) == _click_params("stats", args)


@pytest.mark.parametrize("argv", REFUSED, ids=lambda a: " ".join(a))
def test_other_forms_go_to_click(argv):
    assert entry.plan(argv) is None


def test_host_from_flag_env_and_default(monkeypatch):
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)
    assert entry.plan(["stats"])[1] == "unix:///run/dockyard.sock"
    monkeypatch.setenv("DOCKYARD_HOST", "unix:///tmp/x.sock")
    assert entry.plan(["exec", "web", "true"])[1] == "unix:///tmp/x.sock"
    assert entry.plan(["-H", "unix:///a", "--host=unix:///b", "container", "exec", "web", "true"])[1] == "unix:///b"
    assert entry.plan(["--host", "tcp://127.0.0.1:1", "container", "stats"])[:2] == ("stats", "tcp://127.0.0.1:1")


def _run(*args, env=None):
    return subprocess.run([DOCKYARD, *args], capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, **(env or {})))


def test_hot_path_errors_match_click_path(tmp_path):
    """No daemon: the hand-parsed command says what click's would, with the same exit code."""
    host = f"unix://{tmp_path}/none.sock"
    hot = _run("-H", host, "exec", "web", "true")
    cold = _run("-H", host, "exec", "--", "web", "true")  # a form only click takes
    assert (hot.returncode, hot.stderr) == (cold.returncode, cold.stderr) == (1, cold.stderr)
    assert "Is the daemon running?" in hot.stderr
    bad = _run("-H", "ftp://x", "stats", "--no-stream")
    assert bad.returncode == 1 and "invalid host" in bad.stderr, bad
    # --help goes to click
    h = _run("exec", "--help")
    assert h.returncode == 0 and "--detach-keys" in h.stdout


def test_hot_path_imports_no_click():
    code = ("import sys; sys.argv = ['dockyard', '-H', 'unix:///nonexistent.sock', 'stats', '--no-stream']\n"
            "import os; os._exit = lambda c: print(sorted(m for m in sys.modules if m.split('.')[0] == 'click'))\n"
            "from dockyard.cli.entry import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.stdout.strip().splitlines()[-1] == "[]", r
