"""Pure tests: run/create flags -> the Docker create request, parsed by click as the CLI does."""

import click
import pytest

from dockyard.cli import containers, opts
from dockyard.cli.client import _query, filters_param


def body_for(*argv):
    """Parse ``dockyard run`` arguments with the real click command and build the create body."""
    ctx = containers.run.make_context("run", list(argv))
    o = dict(ctx.params)
    image, command = o.pop("image"), o.pop("command")
    return opts.build_create(o, image, command)


def test_minimal_body():
    params, body = body_for("busybox", "echo", "hi")
    assert params == {"name": None}
    assert body["Image"] == "busybox" and body["Cmd"] == ["echo", "hi"]
    assert body["AttachStdout"] and body["AttachStderr"] and not body["AttachStdin"]
    assert body["Entrypoint"] is None and body["Env"] is None and body["Labels"] == {}
    hc = body["HostConfig"]
    assert hc["NetworkMode"] == "default" and hc["AutoRemove"] is False
    assert hc["LogConfig"] == {"Type": "", "Config": {}}
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"default": {}}}


def test_command_flags_are_not_ours():
    _, body = body_for("busybox", "ls", "-l", "--rm")
    assert body["Cmd"] == ["ls", "-l", "--rm"] and body["HostConfig"]["AutoRemove"] is False


def test_rich_body(tmp_path, monkeypatch):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=1\n\nCOPIED\n")
    monkeypatch.setenv("COPIED", "yes")
    params, body = body_for(
        "--name", "web", "--rm", "-e", "A=1", "--env-file", str(env_file), "-w", "/tmp", "-u", "33",
        "--hostname", "h1", "--read-only", "--tmpfs", "/run:size=1m", "-v", "/tmp:/hosttmp:ro",
        "-v", "named:/data", "-v", "/anon", "--mount", "type=tmpfs,target=/t,tmpfs-size=1m",
        "--mount", "type=bind,source=/etc,target=/e,readonly", "--entrypoint", "", "-l", "a=b",
        "--init", "-i", "-t", "--network", "none", "-m", "64m", "--memory-swap", "-1",
        "--cpus", "0.5", "--cpu-shares", "512", "--cpuset-cpus", "0", "--pids-limit", "10",
        "--cap-add", "net_admin", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--stop-signal", "SIGUSR1", "--stop-timeout", "7", "--log-driver", "json-file",
        "--log-opt", "max-size=1m", "-p", "127.0.0.1:8081:80", "-p", "9000/udp",
        "--restart", "on-failure:3", "busybox")
    assert params == {"name": "web"}
    hc = body["HostConfig"]
    assert body["Env"] == ["FROM_FILE=1", "COPIED=yes", "A=1"]
    assert body["WorkingDir"] == "/tmp" and body["User"] == "33" and body["Hostname"] == "h1"
    assert body["Entrypoint"] == [""] and body["Labels"] == {"a": "b"} and body["Cmd"] is None
    assert body["Tty"] and body["OpenStdin"] and body["AttachStdin"] and body["StdinOnce"]
    assert body["Volumes"] == {"/anon": {}}
    assert body["StopSignal"] == "SIGUSR1" and body["StopTimeout"] == 7
    assert body["ExposedPorts"] == {"80/tcp": {}, "9000/udp": {}}
    assert hc["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8081"}],
                                  "9000/udp": [{"HostIp": "", "HostPort": ""}]}
    assert hc["Binds"] == ["/tmp:/hosttmp:ro", "named:/data"]
    assert hc["Mounts"] == [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20}},
                            {"Type": "bind", "Source": "/etc", "Target": "/e", "ReadOnly": True}]
    assert hc["Tmpfs"] == {"/run": "size=1m"} and hc["ReadonlyRootfs"] and hc["Init"]
    assert hc["NetworkMode"] == "none" and body["NetworkingConfig"]["EndpointsConfig"] == {"none": {}}
    assert hc["Memory"] == 64 << 20 and hc["MemorySwap"] == -1 and hc["NanoCpus"] == 500_000_000
    assert hc["CpuShares"] == 512 and hc["CpusetCpus"] == "0" and hc["PidsLimit"] == 10
    assert hc["CapAdd"] == ["CAP_NET_ADMIN"] and hc["CapDrop"] == ["ALL"]
    assert hc["SecurityOpt"] == ["no-new-privileges"] and hc["AutoRemove"]
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}


def test_detach_attaches_nothing():
    _, body = body_for("-d", "-i", "busybox")
    assert not (body["AttachStdin"] or body["AttachStdout"] or body["AttachStderr"])
    assert body["OpenStdin"] and not body["StdinOnce"]


def test_relative_bind_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert opts.parse_volume("./d:/x") == (str(tmp_path / "d"), "/x", "")


@pytest.mark.parametrize("argv,msg", [
    (["-v", "a:relative", "busybox"], "mount path must be absolute"),
    (["-v", "/a:/b:bogus", "busybox"], "invalid mode"),
    (["--mount", "type=nfs,target=/x", "busybox"], "not supported"),
    (["--mount", "type=bind,target=/x", "busybox"], "source is required"),
    (["--mount", "source=v", "busybox"], "target is required"),
    (["-p", "99999:80", "busybox"], "invalid port"),
    (["-p", "abc", "busybox"], "invalid port"),
    (["-m", "lots", "busybox"], "invalid size"),
    (["--cpus", "many", "busybox"], "--cpus"),
    (["--restart", "sometimes", "busybox"], "restart policy"),
    (["-e", "=x", "busybox"], "environment variable"),
    (["--tmpfs", "run", "busybox"], "tmpfs"),
    (["--env-file", "/nonexistent/env", "busybox"], "/nonexistent/env"),
])
def test_bad_flags_are_one_clear_line(argv, msg):
    with pytest.raises(ValueError) as e:
        body_for(*argv)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_click_rejects_bad_int():
    with pytest.raises(click.BadParameter):
        body_for("--pids-limit", "x", "busybox")


def test_query_and_filters():
    assert _query({"all": 1, "limit": None, "names": ["a", "b"], "force": True}) == "?all=1&names=a&names=b&force=1"
    assert filters_param(["label=a=b", "label=k", "status=exited"]) == \
        '{"label":{"a=b":true,"k":true},"status":{"exited":true}}'
    assert filters_param([]) is None
    with pytest.raises(ValueError):
        filters_param(["nonsense"])
