"""Engine contract tests with real containers (conmon + the runtime) on private roots."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dockyard import errdefs
from dockyard.engine import EXITED, RUNNING, ocispec

pytestmark = pytest.mark.privileged


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def logs_text(eng, cid, **kw):
    return b"".join([e.data async for e in eng.logs(cid, **kw)]).decode()


async def run_to_exit(eng, cmd, host_config=None, **config):
    cid, _ = await eng.create_container(None, {"Image": "busybox", "Cmd": cmd, **config}, host_config or {})
    waiter = asyncio.ensure_future(eng.wait(cid, "next-exit"))
    await eng.start(cid)
    return cid, await waiter


def test_echo_logs_and_attach(roots):
    async def body():
        eng = await roots.open()
        try:
            cid, code = await run_to_exit(eng, ["echo", "hello"])
            c = eng.get(cid)
            assert (code, c.state.status, c.state.exit_code) == (0, EXITED, 0)
            assert await logs_text(eng, cid) == "hello\n"
            assert c.state.finished_at >= c.state.started_at
            # docker run's order (create, attach, wait, start): the output must never be missed.
            for i in range(10):
                cid, _ = await eng.create_container(None, {"Image": "busybox", "Cmd": ["echo", f"hi{i}"]}, {})
                s = await eng.attach(cid, stdout=True, stderr=True)
                await eng.start(cid)
                out = [item async for item in s.output()]
                assert out == [("stdout", f"hi{i}\n".encode())], out
                assert await eng.wait(cid) == 0
                await eng.remove(cid)
            assert roots.leaks() == []
        finally:
            await eng.close()
    run(body())


def test_exit_code_and_stderr(roots):
    async def body():
        eng = await roots.open()
        try:
            cid, code = await run_to_exit(eng, ["sh", "-c", "echo out; echo err >&2; exit 3"])
            assert code == 3 and eng.get(cid).state.exit_code == 3
            assert await logs_text(eng, cid, stdout=False) == "err\n"
            assert await logs_text(eng, cid, stderr=False) == "out\n"
            assert await eng.wait(cid) == 3  # not-running returns at once for an exited container
        finally:
            await eng.close()
    run(body())


def test_stdin_attach(roots):
    async def body():
        eng = await roots.open()
        try:
            cid, _ = await eng.create_container(
                None, {"Image": "busybox", "Cmd": ["sh", "-c", "read x; echo got $x"], "OpenStdin": True}, {})
            s = await eng.attach(cid, stdin=True)
            await s.write_stdin(b"ping\n")  # before start: buffered
            await eng.start(cid)
            out = b"".join([d async for _, d in s.output()])
            assert out == b"got ping\n"
            assert await eng.wait(cid) == 0
        finally:
            await eng.close()
    run(body())


def test_oom_killed(roots):
    async def body():
        eng = await roots.open()
        try:
            hog = "x=0123456789; while true; do x=$x$x; done"
            cid, code = await run_to_exit(eng, ["sh", "-c", hog],
                                          {"Memory": 16 * 1024 * 1024, "MemorySwap": 16 * 1024 * 1024})
            c = eng.get(cid)
            assert code == 137 and c.state.oom_killed
        finally:
            await eng.close()
    run(body())


def test_stop_and_kill(roots):
    async def body():
        eng = await roots.open()
        try:
            # PID 1 ignores SIGTERM without a handler: stop must escalate to SIGKILL after the timeout.
            cid, _ = await eng.create_container("sleeper", {"Image": "busybox", "Cmd": ["sleep", "300"]}, {})
            await eng.start(cid)
            c = eng.get("sleeper")
            assert c.state.status == RUNNING and c.state.pid > 0
            with pytest.raises(errdefs.NotModified):
                await eng.start(cid)
            t0 = time.monotonic()
            await eng.stop("sleeper", timeout=1)
            assert 0.9 < time.monotonic() - t0 < 10
            assert c.state.status == EXITED and c.state.exit_code == 137
            with pytest.raises(errdefs.NotModified):
                await eng.stop(cid)
            with pytest.raises(errdefs.Conflict):
                await eng.kill(cid)
            # A process that handles SIGTERM exits by itself; restart runs it again.
            trap = "trap 'exit 7' TERM; trap 'exit 9' USR1; while true; do sleep 0.1; done"
            cid2, _ = await eng.create_container(None, {"Image": "busybox", "Cmd": ["sh", "-c", trap]}, {})
            await eng.start(cid2)
            await asyncio.sleep(0.3)
            await eng.stop(cid2, timeout=10)
            assert eng.get(cid2).state.exit_code == 7
            await eng.restart(cid2, timeout=10)
            assert eng.get(cid2).state.status == RUNNING
            await asyncio.sleep(0.3)
            await eng.kill(cid2, "USR1")
            assert await eng.wait(cid2) == 9
            with pytest.raises(errdefs.InvalidArgument):
                await eng.kill(cid, "NOSUCHSIG")
        finally:
            await eng.close()
    run(body())


def test_remove(roots):
    async def body():
        eng = await roots.open()
        try:
            cid, _ = await eng.create_container(None, {"Image": "busybox", "Cmd": ["sleep", "300"]}, {})
            await eng.start(cid)
            bundle = eng.get(cid).bundle
            with pytest.raises(errdefs.Conflict):
                await eng.remove(cid)
            await eng.remove(cid, force=True)
            with pytest.raises(errdefs.NotFound):
                eng.get(cid)
            assert not os.path.exists(bundle)
            assert roots.leaks() == []
            # AutoRemove: the container goes away by itself after exit.
            cid, _ = await eng.create_container(None, {"Image": "busybox", "Cmd": ["true"]}, {"AutoRemove": True})
            gone = asyncio.ensure_future(eng.wait(cid, "removed"))
            await eng.start(cid)
            assert await gone == 0
            with pytest.raises(errdefs.NotFound):
                eng.get(cid)
        finally:
            await eng.close()
    run(body())


def test_names_and_bad_input(roots):
    async def body():
        eng = await roots.open()
        try:
            cid, _ = await eng.create_container("web", {"Image": "busybox", "Cmd": ["true"]}, {})
            assert eng.get("web").id == eng.get("/web").id == eng.get(cid[:10]).id == cid
            with pytest.raises(errdefs.AlreadyExists, match='name "/web" is already in use'):
                await eng.create_container("web", {"Image": "busybox", "Cmd": ["true"]}, {})
            with pytest.raises(errdefs.InvalidArgument, match=r"Invalid container name \(-x\)"):
                await eng.create_container("-x", {"Image": "busybox"}, {})
            with pytest.raises(errdefs.NotFound, match="No such image: nope:latest"):
                await eng.create_container(None, {"Image": "nope"}, {})
            with pytest.raises(errdefs.InvalidArgument):
                await eng.create_container(None, {"Image": "busybox"}, {"Binds": ["relative:/x:bogus"]})
            assert [c.id for c in eng.list(all=True)] == [cid]
            assert sorted(os.listdir(os.path.join(roots.data, "containers"))) == [cid]
            await eng.rename("web", "api")
            assert eng.get("api").name == "/api"
            # Two creates racing for one name: the UNIQUE index lets exactly one win.
            results = await asyncio.gather(
                *[eng.create_container("dup", {"Image": "busybox", "Cmd": ["true"]}, {}) for _ in range(2)],
                return_exceptions=True)
            assert sorted(type(r).__name__ for r in results) == ["AlreadyExists", "tuple"], results
            await eng.remove("dup")
            random_cid, _ = await eng.create_container(None, {"Image": "busybox", "Cmd": ["true"]}, {})
            assert "_" in eng.get(random_cid).name
            with pytest.raises(errdefs.AlreadyExists):
                await eng.rename(random_cid, "api")
        finally:
            await eng.close()
    run(body())


def test_config_merge_user_and_files(roots):
    async def body():
        eng = await roots.open()
        try:
            cmd = ["sh", "-c", "id; cat /etc/hostname; echo $HOME; pwd"]
            cid, code = await run_to_exit(eng, cmd, User="www-data", WorkingDir="/tmp", Hostname="box")
            assert code == 0
            out = await logs_text(eng, cid)
            assert out == "uid=33(www-data) gid=33(www-data) groups=33(www-data),50(staff)\nbox\n/var/www\n/tmp\n", out
            cid, _ = await eng.create_container(None, {"Image": "busybox", "Cmd": ["true"], "User": "ghost"}, {})
            with pytest.raises(errdefs.InvalidArgument, match="unable to find user ghost"):
                await eng.start(cid)
            c = eng.get(cid)
            assert c.state.status == "created" and "unable to find user ghost" in c.state.error
            assert roots.leaks() == []
        finally:
            await eng.close()
    run(body())


def test_volumes(roots, tmp_path):
    async def body():
        eng = await roots.open()
        try:
            host = tmp_path / "h"
            host.mkdir()
            (host / "f").write_text("from host\n")
            hc = {"Binds": [f"{host}:/h:ro", "data:/data"], "Tmpfs": {"/scratch": "size=1m"}}
            cmd = ["sh", "-c", "cat /h/f; echo v > /data/x; touch /h/y 2>/dev/null || echo ro; "
                   "grep -c ' /scratch tmpfs' /proc/mounts; ls /anon"]
            cid, code = await run_to_exit(eng, cmd, hc, Volumes={"/anon": {}})
            assert await logs_text(eng, cid) == "from host\nro\n1\n", await logs_text(eng, cid)
            assert code == 0
            vol = eng.get_volume("data")
            assert open(os.path.join(vol.mountpoint, "x")).read() == "v\n"
            anon = [m["Name"] for m in eng.get(cid).mount_plan if m.get("Anonymous")]
            shown = {m["Destination"]: m for m in eng.get(cid).mounts}
            assert sorted(shown) == ["/anon", "/data", "/h"]  # --tmpfs mounts are not listed
            assert shown["/data"] == {"Type": "volume", "Name": "data", "Source": vol.mountpoint,
                                      "Destination": "/data", "Driver": "local", "Mode": "z", "RW": True,
                                      "Propagation": ""}
            assert shown["/h"] == {"Type": "bind", "Source": str(host), "Destination": "/h", "Mode": "ro",
                                   "RW": False, "Propagation": "rprivate"}
            assert len(anon) == 1 and eng.get_volume(anon[0]).labels == {"com.docker.volume.anonymous": ""}
            with pytest.raises(errdefs.Conflict, match=f"remove data: volume is in use - \\[{cid}\\]"):
                await eng.remove_volume("data")
            with pytest.raises(errdefs.NotFound, match="get nope: no such volume"):
                eng.get_volume("nope")
            await eng.remove(cid, volumes=True)
            assert [v.name for v in eng.list_volumes()] == ["data"]  # named volumes stay
            assert (await eng.prune_volumes(all=True))[0] == ["data"]
        finally:
            await eng.close()
    run(body())


def test_reopen_readopts_running_container(roots):
    async def body():
        eng = await roots.open()
        cid, _ = await eng.create_container(None, {"Image": "busybox", "Cmd": ["sh", "-c", "sleep 1; exit 4"]}, {})
        await eng.start(cid)
        await eng.close()
        eng = await roots.open()
        try:
            assert eng.get(cid).state.status == RUNNING
            assert await eng.wait(cid) == 4
            assert eng.get(cid).state.status == EXITED
            assert roots.leaks() == []
        finally:
            await eng.close()
    run(body())


CHILD = textwrap.dedent("""
    import asyncio, sys
    from dockyard.engine import Engine
    async def main():
        eng = await Engine.open(sys.argv[1], sys.argv[2])
        for cmd in (["sh", "-c", "sleep 2; exit 5"], ["sh", "-c", "exit 6"]):
            cid, _ = await eng.create_container(None, {"Image": "busybox", "Cmd": cmd}, {})
            await eng.start(cid)
            print(cid, flush=True)
        await asyncio.sleep(3600)
    asyncio.run(main())
""")


def test_reopen_after_daemon_sigkill(roots):
    child = subprocess.Popen([sys.executable, "-c", CHILD, roots.data, roots.exec], stdout=subprocess.PIPE, text=True)
    try:
        slow, fast = child.stdout.readline().strip(), child.stdout.readline().strip()
        roots.seen.update((slow, fast))
        assert len(slow) == 64 and len(fast) == 64, (slow, fast)
        time.sleep(0.5)  # the fast one exits while the "daemon" is still up, or right after
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    async def body():
        eng = await roots.open()
        try:
            assert eng.get(fast).state.exit_code == 6 or await eng.wait(fast) == 6
            assert eng.get(slow).state.status == RUNNING
            assert await eng.wait(slow) == 5
            assert roots.leaks() == []
        finally:
            await eng.close()
    run(body())


def test_log_rotation(roots):
    async def body():
        eng = await roots.open()
        try:
            hc = {"LogConfig": {"Type": "json-file", "Config": {"max-size": "2k", "max-file": "3"}}}
            cmd = ["sh", "-c", "i=0; while [ $i -lt 150 ]; do echo line$i; i=$((i+1)); sleep 0.01; done"]
            cid, code = await run_to_exit(eng, cmd, hc)
            assert code == 0
            path = eng.get(cid).log_path
            assert os.path.exists(path + ".1") and not os.path.exists(path + ".3")
            lines = (await logs_text(eng, cid)).split()
            assert lines[-1] == "line149" and len(lines) < 150
            assert lines == [f"line{i}" for i in range(150 - len(lines), 150)]  # contiguous
        finally:
            await eng.close()
    run(body())


def test_volume_copy_up(roots):
    async def body():
        eng = await roots.open()
        try:
            # The image has files in /etc: an empty volume mounted there starts with a copy of them.
            cid, code = await run_to_exit(eng, ["sh", "-c", "cat /etc/group /etc/hostname"],
                                          {"Binds": ["etcvol:/etc"]}, Hostname="vh")
            out = await logs_text(eng, cid)
            assert code == 0 and "staff:x:50" in out and out.endswith("vh\n"), out
            cid2, _ = await run_to_exit(eng, ["ls", "/etc"], {"Mounts": [
                {"Type": "volume", "Source": "empty", "Target": "/etc", "VolumeOptions": {"NoCopy": True}}]})
            # Nothing copied: only the mount points of the files Docker binds into /etc.
            assert (await logs_text(eng, cid2)).split() == ["hostname", "hosts", "resolv.conf"]
        finally:
            await eng.close()
    run(body())


def test_reopen_rolls_back_half_started(roots):
    async def body():
        eng = await roots.open()
        cid, _ = await eng.create_container(None, {"Image": "busybox", "Cmd": ["sleep", "300"]}, {})
        c = eng.get(cid)
        # What a crash between runtime.create and the start commit point leaves behind.
        await asyncio.to_thread(eng._create_in_runtime, c)
        assert cid in eng.runtime.list() and roots.leaks()
        await eng.close()
        eng = await roots.open()
        try:
            assert eng.get(cid).state.status == "created"
            assert cid not in eng.runtime.list() and roots.leaks() == []
            await eng.start(cid)  # and it can still start
            await eng.stop(cid, timeout=0)
        finally:
            await eng.close()
    run(body())


def test_host_config_options(roots):
    async def body():
        eng = await roots.open()
        try:
            async def out_of(cmd, hc, **cfg):
                cid, code = await run_to_exit(eng, ["sh", "-c", cmd], hc, **cfg)
                return code, await logs_text(eng, cid)

            code, out = await out_of("touch /x 2>&1 || echo ro; touch /tmp/x 2>/dev/null || echo tmp-ro",
                                     {"ReadonlyRootfs": True})
            assert out == "touch: /x: Read-only file system\nro\ntmp-ro\n", out
            code, out = await out_of("grep -E '^(CapEff|NoNewPrivs)' /proc/self/status",
                                     {"CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"]})
            assert out.split() == ["CapEff:", "0000000000000000", "NoNewPrivs:", "1"], out
            code, out = await out_of("tail -n +3 /proc/net/dev | wc -l", {"NetworkMode": "none"})
            assert out.strip() == "1"  # only lo
            code, out = await out_of("tail -n +3 /proc/net/dev | wc -l", {"NetworkMode": "host"})
            assert int(out) > 1 and eng.list(all=True)[0].host_config["NetworkMode"] == "host"
            if ocispec.find_init():
                code, out = await out_of("cat /proc/1/comm", {"Init": True})
                assert out == "docker-init\n"
            code, out = await out_of("echo $HOSTNAME $FOO; cat /etc/hostname", {}, Env=["FOO=bar"])
            cid = eng.list(all=True)[0].id
            assert out == f"{cid[:12]} bar\n{cid[:12]}\n"
            code, out = await out_of("for i in 1 2 3 4 5 6; do sleep 1 & done; wait", {"PidsLimit": 4})
            assert "can't fork" in out or "Resource temporarily unavailable" in out or code != 0, out
        finally:
            await eng.close()
    run(body())


def test_tty_console_size_and_attach_end(roots):
    async def body():
        eng = await roots.open()
        try:
            cfg = {"Image": "busybox", "Cmd": ["sh", "-c", "stty size; tty"], "Tty": True, "OpenStdin": True,
                   "StdinOnce": True}
            cid, _ = await eng.create_container(None, cfg, {"ConsoleSize": [33, 77]})
            s = await eng.attach(cid, stdin=True)
            await eng.start(cid)
            out = b"".join([d async for _, d in s.output()])
            assert out == b"33 77\r\n/dev/pts/0\r\n", out
            # The output ends only once the exit is recorded: removing right away must work.
            assert eng.get(cid).state.status == EXITED
            await eng.remove(cid)
        finally:
            await eng.close()
    run(body())


def test_concurrent_creates_never_share_a_name(roots, monkeypatch):
    """A name is reserved before the create's first await: random names drawn at the same time
    stay distinct, and of creates racing for one name exactly one wins (moby's 409 for the rest)."""
    from dockyard.engine import names

    async def body():
        eng = await roots.open()
        try:
            # Every random draw is the same name: without the reservation all would take it.
            monkeypatch.setattr(names.secrets, "choice", lambda seq: seq[0])
            got = await asyncio.gather(*(eng.create_container(None, {"Image": "busybox", "Cmd": ["true"]}, {}) for _ in range(8)),
                                       return_exceptions=True)
            ids = [g[0] for g in got if not isinstance(g, BaseException)]
            assert len(ids) == 8, got
            assert len({eng.get(i).name for i in ids}) == 8
            monkeypatch.undo()
            got = await asyncio.gather(*(eng.create_container("same", {"Image": "busybox", "Cmd": ["true"]}, {}) for _ in range(6)),
                                       return_exceptions=True)
            won = [g for g in got if not isinstance(g, BaseException)]
            lost = [g for g in got if isinstance(g, BaseException)]
            assert len(won) == 1 and len(lost) == 5, got
            assert all(isinstance(e, errdefs.AlreadyExists) and won[0][0] in str(e) for e in lost), lost
            for cid in ids + [won[0][0]]:
                await eng.remove(cid, force=True)
        finally:
            await eng.close()

    run(body())
