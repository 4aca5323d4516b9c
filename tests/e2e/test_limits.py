"""Resource limits bite end to end: the kernel enforces what the flags ask for.

Behaviour checks with generous bounds, not benchmarks.
"""

import pytest
from e2e_util import ok

pytestmark = pytest.mark.privileged


def test_memory_limit_oom_kills(clean_daemon, name):
    d = clean_daemon
    # dd allocates its block and fills it from /dev/zero: 64 MiB resident > 16 MiB (+ equal swap).
    r = d.docker("run", "--name", name, "--memory", "16m", "busybox",
                 "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
    assert r.returncode == 137, (r.returncode, r.stderr)
    assert ok(d.docker("inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}", name)).strip() == "true 137"


def test_memory_limit_allows_small(clean_daemon):
    r = clean_daemon.docker("run", "--rm", "--memory", "16m", "busybox",
                            "dd", "if=/dev/zero", "of=/dev/null", "bs=1M", "count=4")
    assert r.returncode == 0, r.stderr


def test_pids_limit(clean_daemon):
    # 30 background sleeps cannot all start under a limit of 10 tasks: the shell fails to fork.
    script = "for i in $(seq 30); do sleep 5 & done; echo spawned-all"
    r = clean_daemon.docker("run", "--rm", "--pids-limit", "10", "busybox", "sh", "-c", script)
    assert "spawned-all" not in r.stdout and r.returncode != 0, (r.returncode, r.stdout, r.stderr)
    assert "fork" in r.stderr, r.stderr
    unlimited = clean_daemon.docker("run", "--rm", "busybox", "sh", "-c", script.replace("sleep 5", "sleep 0.1"))
    assert ok(unlimited).strip() == "spawned-all"


def _busy_share(d, *flags, seconds=3):
    """CPU seconds one busy loop gets per wall second inside a container."""
    script = (f"yes >/dev/null & p=$!; sleep {seconds}; "
              "cut -d' ' -f14,15 /proc/$p/stat; kill $p")
    out = ok(d.docker("run", "--rm", *flags, "busybox", "sh", "-c", script)).split()
    ticks = int(out[0]) + int(out[1])  # utime + stime, in USER_HZ (100/s)
    return ticks / 100 / seconds


def test_cpus_half(clean_daemon):
    share = _busy_share(clean_daemon, "--cpus", "0.5")
    assert 0.3 <= share <= 0.7, share
    # Without the quota the same loop gets more (bounds are loose: the 2 CPUs may be shared).
    assert _busy_share(clean_daemon, seconds=2) > share + 0.1


def test_cpuset_cpus(clean_daemon):
    out = ok(clean_daemon.docker("run", "--rm", "--cpuset-cpus", "0", "busybox",
                                 "grep", "Cpus_allowed_list", "/proc/self/status"))
    assert out.split() == ["Cpus_allowed_list:", "0"]
