"""dockyard system df / prune against a real daemon, beside the real docker CLI's."""

import pytest
from e2e_util import ok

pytestmark = pytest.mark.privileged


def test_system_prune_removes_stopped_containers_and_keeps_running_ones(clean_daemon, name):
    d = clean_daemon
    stopped = ok(d.cli("run", "-d", "busybox", "true")).strip()
    ok(d.cli("wait", stopped))
    running = ok(d.cli("run", "-d", "--name", name, "busybox", "sleep", "300")).strip()
    out = ok(d.cli("system", "prune", "-f"))
    assert "Deleted Containers:" in out and stopped in out, out
    assert out.rstrip().splitlines()[-1].startswith("Total reclaimed space:"), out
    ids = ok(d.cli("ps", "-a", "-q", "--no-trunc")).split()
    assert stopped not in ids and running in ids
    ok(d.cli("rm", "-f", running))


def test_system_prune_without_force_asks_and_does_nothing_on_no(clean_daemon):
    d = clean_daemon
    cid = ok(d.cli("run", "-d", "busybox", "true")).strip()
    ok(d.cli("wait", cid))
    r = d.cli("system", "prune", input="n\n")
    assert r.returncode == 0 and "Are you sure you want to continue? [y/N]" in r.stderr
    assert cid in ok(d.cli("ps", "-a", "-q", "--no-trunc")).split()


def test_system_df_table_has_docker_rows(clean_daemon):
    out = ok(clean_daemon.cli("system", "df"))
    lines = out.splitlines()
    assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert [l.split("  ")[0] for l in lines[1:]] == ["Images", "Containers", "Local Volumes", "Build Cache"]
    # The same daemon answers docker's own `system df` with the same rows.
    docker_rows = [l.split("  ")[0] for l in ok(clean_daemon.docker("system", "df")).splitlines()[1:]]
    assert docker_rows == ["Images", "Containers", "Local Volumes", "Build Cache"]
