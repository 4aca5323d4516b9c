"""Table tests for the pure OCI-resources -> cgroup-files translation (no root needed)."""

import pytest

from dockyard import errdefs
from dockyard.runtime.cgroups import plan

MiB = 1 << 20


@pytest.mark.parametrize("resources, expected", [
    ({}, []),
    ({"memory": {"limit": 64 * MiB}}, [("memory", "memory.limit_in_bytes", str(64 * MiB))]),
    ({"memory": {"limit": 64 * MiB, "swap": 128 * MiB, "reservation": 32 * MiB}}, [
        ("memory", "memory.limit_in_bytes", str(64 * MiB)),
        ("memory", "memory.memsw.limit_in_bytes", str(128 * MiB)),
        ("memory", "memory.soft_limit_in_bytes", str(32 * MiB))]),
    ({"memory": {"limit": -1, "swap": -1}}, [
        ("memory", "memory.limit_in_bytes", "-1"), ("memory", "memory.memsw.limit_in_bytes", "-1")]),
    ({"memory": {"swappiness": 0, "disableOOMKiller": True}}, [
        ("memory", "memory.swappiness", "0"), ("memory", "memory.oom_control", "1")]),
    ({"cpu": {"shares": 512, "quota": 50000, "period": 100000}}, [
        ("cpu", "cpu.shares", "512"), ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "50000")]),
    ({"cpu": {"quota": -1}}, [("cpu", "cpu.cfs_quota_us", "-1")]),
    ({"cpu": {"cpus": "0-1", "mems": "0"}}, [("cpuset", "cpuset.cpus", "0-1"), ("cpuset", "cpuset.mems", "0")]),
    ({"pids": {"limit": 10}}, [("pids", "pids.max", "10")]),
    ({"pids": {"limit": -1}}, [("pids", "pids.max", "max")]),
    ({"pids": {"limit": 0}}, []),
    ({"blockIO": {"weight": 500}}, [("blkio", "blkio.weight", "500")]),
    ({"devices": [{"allow": False, "access": "rwm"},
                  {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                  {"allow": True, "type": "c", "major": 136, "access": "rwm"}]}, [
        ("devices", "devices.deny", "a *:* rwm"), ("devices", "devices.allow", "c 1:3 rw"),
        ("devices", "devices.allow", "c 136:* rwm")]),
])
def test_plan_v1(resources, expected):
    assert plan.plan_v1(resources) == expected


@pytest.mark.parametrize("resources, expected", [
    ({}, []),
    ({"memory": {"limit": 64 * MiB}}, [("memory.max", str(64 * MiB))]),
    # OCI swap is memory+swap; v2's memory.swap.max is the swap part alone.
    ({"memory": {"limit": 64 * MiB, "swap": 96 * MiB}},
     [("memory.max", str(64 * MiB)), ("memory.swap.max", str(32 * MiB))]),
    ({"memory": {"limit": 64 * MiB, "swap": 64 * MiB}}, [("memory.max", str(64 * MiB)), ("memory.swap.max", "0")]),
    ({"memory": {"limit": 64 * MiB, "swap": -1}}, [("memory.max", str(64 * MiB)), ("memory.swap.max", "max")]),
    ({"memory": {"limit": -1}}, [("memory.max", "max"), ("memory.swap.max", "max")]),
    ({"memory": {"reservation": 32 * MiB}}, [("memory.low", str(32 * MiB))]),
    ({"cpu": {"shares": 1024}}, [("cpu.weight", "39")]),
    ({"cpu": {"shares": 2}}, [("cpu.weight", "1")]),
    ({"cpu": {"shares": 262144}}, [("cpu.weight", "10000")]),
    ({"cpu": {"quota": 50000, "period": 100000}}, [("cpu.max", "50000 100000")]),
    ({"cpu": {"quota": 150000}}, [("cpu.max", "150000 100000")]),
    ({"cpu": {"period": 50000}}, [("cpu.max", "max 50000")]),
    ({"cpu": {"cpus": "1", "mems": "0"}}, [("cpuset.cpus", "1"), ("cpuset.mems", "0")]),
    ({"pids": {"limit": 5}}, [("pids.max", "5")]),
    ({"pids": {"limit": -1}}, [("pids.max", "max")]),
    ({"blockIO": {"weight": 10}}, [("io.weight", "1")]),
    ({"blockIO": {"weight": 1000}}, [("io.weight", "10000")]),
    ({"unified": {"memory.high": "1G"}}, [("memory.high", "1G")]),
])
def test_plan_v2(resources, expected):
    assert plan.plan_v2(resources) == expected


@pytest.mark.parametrize("resources, kind, fragment", [
    ({"memory": {"limit": 64 * MiB, "swap": 32 * MiB}}, errdefs.InvalidArgument, "must be >= the memory limit"),
    ({"memory": {"limit": -5}}, errdefs.InvalidArgument, "memory.limit must be -1 or >= 0"),
    ({"memory": {"limit": "64m"}}, errdefs.InvalidArgument, "must be an integer"),
    ({"memory": {"swappiness": 101}}, errdefs.InvalidArgument, "swappiness"),
    ({"memory": []}, errdefs.InvalidArgument, "linux.resources.memory must be an object"),
    ({"devices": [{"access": "rwm"}]}, errdefs.InvalidArgument, "needs a boolean 'allow'"),
    ({"devices": [{"allow": True, "type": "x"}]}, errdefs.InvalidArgument, "type must be a, b or c"),
    ({"devices": [{"allow": True, "access": "rwx"}]}, errdefs.InvalidArgument, "access must use r, w, m"),
])
def test_plan_v1_rejects(resources, kind, fragment):
    with pytest.raises(kind, match=fragment):
        plan.plan_v1(resources)


def test_plan_v1_swap_without_memsw_is_unavailable():
    with pytest.raises(errdefs.Unavailable, match="swap accounting"):
        plan.plan_v1({"memory": {"limit": MiB, "swap": 2 * MiB}}, memsw=False)


@pytest.mark.parametrize("resources, fragment", [
    ({"memory": {"swap": 64 * MiB}}, "needs a memory limit"),
    ({"memory": {"limit": 64 * MiB, "swap": 32 * MiB}}, "must be >= the memory limit"),
    ({"unified": {"../escape": "1"}}, "not a cgroup file name"),
])
def test_plan_v2_rejects(resources, fragment):
    with pytest.raises(errdefs.InvalidArgument, match=fragment):
        plan.plan_v2(resources)


def test_v2_controllers():
    writes = plan.plan_v2({"memory": {"limit": MiB}, "cpu": {"cpus": "0"}, "pids": {"limit": 3}})
    assert plan.v2_controllers(writes) == {"memory", "cpuset", "pids"}


@pytest.mark.parametrize("text, expected", [
    ("max\n", None), ("-1", None), ("9223372036854771712\n", None), ("1048576\n", 1048576), ("0", 0),
])
def test_parse_limit(text, expected):
    assert plan.parse_limit(text) == expected


def test_parse_stat_files():
    assert plan.parse_flat_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")["oom_kill"] == 2
    assert plan.parse_flat_keyed("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")["oom_kill"] == 1
    assert plan.parse_blkio_v1("8:0 Read 4096\n8:0 Write 512\n8:0 Sync 1\n8:16 Read 4\nTotal 4612\n") == (4100, 512)
    assert plan.parse_io_stat_v2("8:0 rbytes=100 wbytes=20 rios=1 wios=1\n8:16 rbytes=1 wbytes=2\n") == (101, 22)
    assert plan.parse_cpuset_list("0-2,5\n") == {0, 1, 2, 5}
    assert plan.parse_cpuset_list("") == set()
