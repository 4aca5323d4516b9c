"""Table tests of the engine's pure planners (no root, no containers)."""

import pytest

from dockyard import errdefs
from dockyard.engine import config, names, ocispec

PASSWD = "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\n"
GROUP = "root:x:0:\nwww-data:x:33:\nstaff:x:50:www-data\n"


@pytest.mark.parametrize("cfg, img, entrypoint, cmd", [
    ({}, {"Cmd": ["sh"]}, None, ["sh"]),
    ({"Cmd": ["ls"]}, {"Cmd": ["sh"], "Entrypoint": ["/init"]}, ["/init"], ["ls"]),
    ({"Entrypoint": ["top"]}, {"Cmd": ["sh"]}, ["top"], None),  # explicit entrypoint resets image Cmd
    ({"Entrypoint": ["top"], "Cmd": ["-b"]}, {"Cmd": ["sh"]}, ["top"], ["-b"]),
    ({"Entrypoint": [""], "Cmd": ["ls"]}, {"Entrypoint": ["/init"]}, None, ["ls"]),
])
def test_cmd_entrypoint(cfg, img, entrypoint, cmd):
    c = config.merge_config(cfg, img)
    assert (c["Entrypoint"], c["Cmd"]) == (entrypoint, cmd)


@pytest.mark.parametrize("cfg", [{"Cmd": 42}, {"Cmd": ["a", 1]}, {"Env": "A=1", "Cmd": ["x"]},
                                 {"Env": [1], "Cmd": ["x"]}, {"Tty": "yes", "Cmd": ["x"]}])
def test_bad_config_types(cfg):
    with pytest.raises(errdefs.InvalidArgument, match="invalid Config"):
        config.merge_config(cfg, {})


def test_cmd_string_is_one_element():
    assert config.merge_config({"Cmd": "ls -l"}, {})["Cmd"] == ["ls -l"]


def test_merge_env_labels_defaults():
    c = config.merge_config({"Env": ["A=2", "C=3"], "Labels": {"x": "1"}, "Cmd": ["true"]},
                            {"Env": ["PATH=/bin", "A=1"], "Labels": {"x": "0", "y": "0"},
                             "WorkingDir": "/w", "User": "www-data", "StopSignal": "SIGINT"})
    assert c["Env"] == ["PATH=/bin", "A=2", "C=3"]
    assert c["Labels"] == {"x": "1", "y": "0"}
    assert (c["WorkingDir"], c["User"], c["StopSignal"]) == ("/w", "www-data", "SIGINT")
    with pytest.raises(errdefs.InvalidArgument, match="No command specified"):
        config.merge_config({}, {})


def test_host_config_defaults_and_errors():
    hc = config.fill_host_config({"NetworkMode": "default"})
    assert hc["NetworkMode"] == "bridge"
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert hc["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert config.fill_host_config({"NetworkMode": "host"})["NetworkMode"] == "host"
    for bad in ({"RestartPolicy": {"Name": "sometimes"}}, {"Memory": 1024},
                {"LogConfig": {"Config": {"max-size": "ten"}}},
                {"AutoRemove": True, "RestartPolicy": {"Name": "always"}}, {"Memory": "1g"},
                {"Binds": "/a:/b"}, {"Privileged": 1}, {"LogConfig": {"Config": {"bogus": "1"}}},
                {"LogConfig": {"Config": {"max-file": "3"}}},
                {"LogConfig": {"Config": {"max-size": "1m", "max-file": "x"}}}):
        with pytest.raises(errdefs.InvalidArgument):
            config.fill_host_config(bad)


@pytest.mark.parametrize("text, n", [("10m", 10 << 20), ("1.5g", 3 << 29), ("100", 100), ("2kb", 2048), ("", None)])
def test_parse_size(text, n):
    assert config.parse_size(text) == n


def test_plan_mounts():
    ms = config.plan_mounts({"Binds": ["/h:/c:ro", "vol:/v"], "Tmpfs": {"/t": "size=1m"},
                             "Mounts": [{"Type": "volume", "Target": "/m"}]}, {"/anon": {}, "/v": {}})
    assert [(m["Type"], m["Destination"], m["RW"]) for m in ms] == [
        ("bind", "/c", False), ("volume", "/v", True), ("volume", "/m", True), ("tmpfs", "/t", True),
        ("volume", "/anon", True)]  # the image's /v is already covered by the -v
    for bad in ({"Binds": ["/h"]}, {"Binds": ["/h:rel"]}, {"Binds": ["/a:/x", "/b:/x"]},
                {"Binds": ["/a:/x:bogus"]}, {"Mounts": [{"Type": "weird", "Target": "/x"}]}):
        with pytest.raises(errdefs.InvalidArgument):
            config.plan_mounts(bad, None)


@pytest.mark.parametrize("spec, uid, gid, groups, home", [
    ("", 0, 0, [0], "/root"),
    ("www-data", 33, 33, [33, 50], "/var/www"),
    ("33:50", 33, 50, [50], "/var/www"),
    ("1234", 1234, 0, [0], "/"),
    ("1234:staff", 1234, 50, [50], "/"),
])
def test_resolve_user(spec, uid, gid, groups, home):
    u = ocispec.resolve_user(spec, PASSWD, GROUP)
    assert (u["uid"], u["gid"], u["additionalGids"], u["home"]) == (uid, gid, groups, home)


def test_resolve_user_unknown():
    with pytest.raises(errdefs.InvalidArgument, match="unable to find user bob: no matching entries in passwd file"):
        ocispec.resolve_user("bob", PASSWD, GROUP)
    with pytest.raises(errdefs.InvalidArgument, match="unable to find group nogrp"):
        ocispec.resolve_user("root:nogrp", PASSWD, GROUP)


def test_resolv_conf_drops_loopback():
    host = "nameserver 127.0.0.53\nnameserver 10.0.0.1\nsearch lan\n"
    assert ocispec.resolv_conf(host, "bridge") == "nameserver 10.0.0.1\nsearch lan\n"
    assert ocispec.resolv_conf(host, "host") == host
    assert "nameserver 8.8.8.8" in ocispec.resolv_conf("nameserver 127.0.0.1\n", "none")


def test_resources():
    r = ocispec.resources({"Memory": 16 << 20, "NanoCpus": 1_500_000_000, "PidsLimit": 10, "CpusetCpus": "0"})
    assert r == {"memory": {"limit": 16 << 20, "swap": 32 << 20},
                 "cpu": {"period": 100000, "quota": 150000, "cpus": "0"}, "pids": {"limit": 10}}
    assert ocispec.resources({"Memory": 16 << 20, "MemorySwap": -1})["memory"]["swap"] == -1


def test_names_and_ids():
    for _ in range(100):
        cid = names.new_id()
        assert len(cid) == 64 and not cid[:12].isdigit()
    assert names.normalize("web") == "/web" and names.normalize("/a.b-c_d") == "/a.b-c_d"
    for bad in ("a", "-x", "a b", "x/y", ""):
        with pytest.raises(errdefs.InvalidArgument, match=r"only \[a-zA-Z0-9\]\[a-zA-Z0-9_.-\] are allowed"):
            names.normalize(bad)
    n = names.random_name(lambda name: False)
    assert "_" in n and names.normalize(n)


@pytest.mark.parametrize("sig, n", [("KILL", 9), ("SIGTERM", 15), ("9", 9), (10, 10), ("usr1", 10)])
def test_parse_signal(sig, n):
    assert ocispec.parse_signal(sig) == n


def _container(hc=None, **cfg):
    from dockyard.engine import Container

    hc = config.fill_host_config(hc or {})
    merged = config.merge_config({"Cmd": ["sh"], **cfg}, {})
    plan = config.plan_mounts(hc, merged.get("Volumes"))
    return Container(id="a" * 64, name="/x", image="busybox", image_id="sha256:" + "b" * 64, created="",
                     config=merged, host_config=hc, mount_plan=plan, rootfs="/r", bundle="/b")


def _build(c, volumes=None):
    from dockyard.runtime import spec as spec_mod

    user = {"uid": 0, "gid": 0, "additionalGids": [0], "home": "/root"}
    files = {"/etc/hosts": "/b/hosts", "/etc/hostname": "/b/hostname"}
    return ocispec.build(c, spec_mod, user, "h", files, volumes or {})


def test_build_spec_namespaces_and_resources():
    s = _build(_container({"NetworkMode": "none", "Memory": 32 << 20, "PidsLimit": 5}))
    assert {n["type"] for n in s["linux"]["namespaces"]} == {"pid", "ipc", "uts", "mount", "cgroup", "network"}
    assert s["linux"]["cgroupsPath"] == "/dockyard/" + "a" * 64
    assert s["linux"]["resources"]["memory"] == {"limit": 32 << 20, "swap": 64 << 20}
    assert s["linux"]["resources"]["pids"] == {"limit": 5}
    assert "seccomp" in s["linux"]
    s = _build(_container({"NetworkMode": "host", "SecurityOpt": ["seccomp=unconfined"]}))
    assert "network" not in {n["type"] for n in s["linux"]["namespaces"]}
    assert "seccomp" not in s["linux"]


def test_build_spec_mounts_sorted_and_replacing_defaults():
    c = _container({"Binds": ["/h:/etc:ro"], "Tmpfs": {"/dev/shm": "size=1m"}})
    s = _build(c)
    dests = [m["destination"] for m in s["mounts"]]
    assert dests.index("/etc") < dests.index("/etc/hosts")
    assert dests.count("/dev/shm") == 1
    shm = next(m for m in s["mounts"] if m["destination"] == "/dev/shm")
    assert shm["type"] == "tmpfs" and "size=1m" in shm["options"]
    etc = next(m for m in s["mounts"] if m["destination"] == "/etc")
    assert etc["source"] == "/h" and "ro" in etc["options"]


def test_build_spec_security_opts():
    profile = '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}'
    s = _build(_container({"SecurityOpt": [f"seccomp={profile}", "no-new-privileges:true"], "ReadonlyRootfs": True}))
    assert s["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_ALLOW", "architectures": [],
                                     "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    assert s["process"]["noNewPrivileges"] is True and s["root"]["readonly"] is True
    with pytest.raises(errdefs.InvalidArgument, match="seccomp"):
        _build(_container({"SecurityOpt": ["seccomp={not json"]}))
    with pytest.raises(errdefs.InvalidArgument, match="security-opt"):
        _build(_container({"SecurityOpt": ["bogus=1"]}))


def test_rfc3339_round_trips_to_the_nanosecond():
    from dockyard.engine.engine import rfc3339, rfc3339_ns

    for ns in (1795335318000000000, 1795335318240292152, 1795335318200000000, 1):
        assert rfc3339_ns(rfc3339(ns)) == ns
    # Go's zero time (never started) and junk are 0: max() with them keeps the other side.
    assert rfc3339_ns("0001-01-01T00:00:00Z") == 0 and rfc3339_ns("junk") == 0
