"""Everyday operations on real containers: exec, pause/unpause, restart policies, events."""

import asyncio
import time

import pytest

from dockyard import errdefs

pytestmark = pytest.mark.privileged


def run(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def sleeper(eng, **config):
    cid, _ = await eng.create_container(None, {"Image": "busybox", "Cmd": ["sleep", "1000"], **config}, {})
    await eng.start(cid)
    return cid


async def exec_output(eng, cid, cmd, **kw):
    eid = await eng.create_exec(cid, cmd, **kw)
    sess = await eng.start_exec(eid)
    out = [item async for item in sess.output()]
    await sess.close()
    return eng.inspect_exec(eid), out


def test_exec_output_exit_code_env_user_workdir(roots):
    async def body():
        eng = await roots.open()
        try:
            cid = await sleeper(eng)
            ex, out = await exec_output(eng, cid, ["sh", "-c", "echo out; echo err >&2; exit 5"])
            assert (ex.exit_code, ex.running) == (5, False)
            assert ("stdout", b"out\n") in out and ("stderr", b"err\n") in out
            ex, out = await exec_output(eng, cid, ["sh", "-c", "echo $X:$(id -u):$(pwd)"],
                                        env=["X=1"], user="nobody", workdir="/tmp")
            assert ex.exit_code == 0
            assert b"".join(d for _, d in out) == b"1:65534:/tmp\n"
            # --privileged gives the exec every capability; without it, the container's set.
            ex, out = await exec_output(eng, cid, ["sh", "-c", "grep CapEff /proc/self/status"], privileged=True)
            full = b"".join(d for _, d in out)
            ex, out = await exec_output(eng, cid, ["sh", "-c", "grep CapEff /proc/self/status"])
            assert int(full.split()[1], 16) > int(b"".join(d for _, d in out).split()[1], 16)
            # Same namespaces as the container: its init is PID 1 there.
            ex, out = await exec_output(eng, cid, ["cat", "/proc/1/cmdline"])
            assert b"".join(d for _, d in out) == b"sleep\x001000\x00"
            # A command that does not exist: start fails with the runtime's message, ExitCode 127.
            eid = await eng.create_exec(cid, ["nosuchcmd"])
            with pytest.raises(errdefs.InvalidArgument, match="nosuchcmd"):
                await eng.start_exec(eid)
            assert eng.inspect_exec(eid).exit_code == 127
            with pytest.raises(errdefs.NotFound, match="No such exec instance: nope"):
                eng.inspect_exec("nope")
            # Detached: runs on its own; its exit is still recorded.
            eid = await eng.create_exec(cid, ["sh", "-c", "touch /tmp/marker"])
            assert await eng.start_exec(eid, detach=True) is None
            for _ in range(100):
                if eng.inspect_exec(eid).exit_code is not None:
                    break
                await asyncio.sleep(0.1)
            assert eng.inspect_exec(eid).exit_code == 0
            ex, _ = await exec_output(eng, cid, ["test", "-f", "/tmp/marker"])
            assert ex.exit_code == 0
            await eng.stop(cid, timeout=0)
            with pytest.raises(errdefs.Conflict, match="is not running"):
                await eng.create_exec(cid, ["ls"])
            await eng.remove(cid)
            assert roots.leaks() == []
        finally:
            await eng.close()
    run(body())


def test_exec_stdin_and_tty(roots):
    async def body():
        eng = await roots.open()
        try:
            cid = await sleeper(eng)
            eid = await eng.create_exec(cid, ["cat"], stdin=True)
            sess = await eng.start_exec(eid)
            await sess.write_stdin(b"hello\n")
            await sess.close_stdin()
            out = [item async for item in sess.output()]
            assert out == [("stdout", b"hello\n")] and eng.inspect_exec(eid).exit_code == 0
            eid = await eng.create_exec(cid, ["sh", "-c", "tty; stty size"], tty=True, console_size=[30, 100])
            sess = await eng.start_exec(eid)
            text = b"".join([d async for _, d in sess.output()])
            assert b"/dev/pts/" in text and b"30 100" in text, text
            assert eng.inspect_exec(eid).exit_code == 0
            # A resize reaches the exec's terminal while it runs.
            eid = await eng.create_exec(cid, ["sh", "-c", "read x; stty size"], tty=True, stdin=True,
                                        console_size=[30, 100])
            sess = await eng.start_exec(eid)
            await eng.resize_exec(eid, 40, 120)
            await sess.write_stdin(b"go\r")
            text = b"".join([d async for _, d in sess.output()])
            assert b"40 120" in text, text
            with pytest.raises(errdefs.Conflict, match="is not running"):
                await eng.resize_exec(eid, 10, 10)
            await eng.remove(cid, force=True)
            assert roots.leaks() == []
        finally:
            await eng.close()
    run(body())


def _cpu_ns(eng, cid) -> int:
    return eng.runtime.cgroup(cid).stats()["cpu"]["usage_ns"]


def test_pause_unpause_stop_kill(roots):
    async def body():
        eng = await roots.open()
        try:
            cid, _ = await eng.create_container(None, {"Image": "busybox", "Cmd": ["sh", "-c", "while :; do :; done"]},
                                                {})
            await eng.start(cid)
            with pytest.raises(errdefs.Conflict, match="is not paused"):
                await eng.unpause(cid)
            await eng.pause(cid)
            c = eng.get(cid)
            assert c.state.status == "paused" and c.state.running
            with pytest.raises(errdefs.Conflict, match="already paused"):
                await eng.pause(cid)
            with pytest.raises(errdefs.Conflict, match="is paused"):
                await eng.create_exec(cid, ["true"])
            # Frozen: no CPU time at all over a second (a busy loop would use most of one).
            await asyncio.sleep(0.2)
            before = _cpu_ns(eng, cid)
            await asyncio.sleep(1.0)
            assert _cpu_ns(eng, cid) - before < 20_000_000
            await eng.unpause(cid)
            assert eng.get(cid).state.status == "running"
            before = _cpu_ns(eng, cid)
            await asyncio.sleep(1.0)
            assert _cpu_ns(eng, cid) - before > 50_000_000  # it runs again (generous under load)
            # stop of a paused container: thawed, then the signal (sh as PID 1 ignores TERM: KILL).
            await eng.pause(cid)
            t = time.monotonic()
            await eng.stop(cid, timeout=1)
            assert eng.get(cid).state.status == "exited" and time.monotonic() - t < 30
            # kill of a paused one.
            await eng.start(cid)
            await eng.pause(cid)
            await eng.kill(cid)
            assert eng.get(cid).state.status == "exited"
            with pytest.raises(errdefs.Conflict, match="is not running"):
                await eng.pause(cid)
            # rm -f of a paused one.
            await eng.start(cid)
            await eng.pause(cid)
            await eng.remove(cid, force=True)
            with pytest.raises(errdefs.NotFound):
                eng.get(cid)
            assert roots.leaks() == []
        finally:
            await eng.close()
    run(body())


# ---- restart policies ------------------------------------------------------------------------

def test_restart_decisions():
    from dockyard.engine.restart import decide, parse_rfc3339, start_on_boot

    always, onf2 = {"Name": "always"}, {"Name": "on-failure", "MaximumRetryCount": 2}
    assert decide({"Name": "no"}, 1, False, 0, 0, 0) == (False, 0)
    assert decide(always, 0, False, 0, 0, 0) == (True, 0.1)
    assert decide(always, 0, False, 0, 1, 0.1) == (True, 0.2)
    assert decide(always, 0, False, 0, 9, 40) == (True, 60)  # capped at a minute
    assert decide(always, 0, False, 10.5, 9, 40) == (True, 0.1)  # a 10 s run resets the back-off
    assert decide(always, 0, True, 0, 0, 0)[0] is False  # stopped by the user
    assert decide(onf2, 0, False, 0, 0, 0)[0] is False
    assert decide(onf2, 1, False, 0, 1, 0.1) == (True, 0.2)
    assert decide(onf2, 1, False, 0, 2, 0.2)[0] is False  # two restarts done
    assert decide({"Name": "on-failure"}, 1, False, 0, 100, 60)[0] is True  # no limit
    assert decide({"Name": "unless-stopped"}, 0, False, 0, 0, 0)[0] is True
    assert start_on_boot(always, True) and start_on_boot({"Name": "unless-stopped"}, False)
    assert not start_on_boot({"Name": "unless-stopped"}, True) and not start_on_boot({"Name": "no"}, False)
    assert parse_rfc3339("1970-01-01T00:00:10.5Z") == 10.5 and parse_rfc3339("0001-01-01T00:00:00Z") == 0


async def poll_until(fn, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not fn():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def with_policy(eng, cmd, name, count=0):
    cid, _ = await eng.create_container(None, {"Image": "busybox", "Cmd": cmd},
                                        {"RestartPolicy": {"Name": name, "MaximumRetryCount": count}})
    await eng.start(cid)
    return cid


def test_restart_policies(roots):
    async def body():
        eng = await roots.open()
        try:
            onf = await with_policy(eng, ["sh", "-c", "exit 3"], "on-failure", 2)
            always = await with_policy(eng, ["true"], "always")
            no = await with_policy(eng, ["sh", "-c", "exit 1"], "no")
            await poll_until(lambda: eng.get(onf).restart_count == 2 and eng.get(onf).state.status == "exited")
            assert eng.get(onf).state.exit_code == 3
            # wait (not-running) does not end at an exit that is followed by a restart.
            waiter = asyncio.ensure_future(eng.wait(always))
            await poll_until(lambda: eng.get(always).restart_count >= 3)
            assert not waiter.done()
            await poll_until(lambda: eng.get(no).state.status == "exited")
            assert eng.get(no).restart_count == 0
            # A stop ends the restarts for good, whether it finds it running or waiting.
            await eng.stop(always, timeout=1)
            assert eng.get(always).state.status == "exited"
            assert await asyncio.wait_for(waiter, 10) == 0
            n = eng.get(always).restart_count
            await asyncio.sleep(1.0)
            assert (eng.get(always).state.status, eng.get(always).restart_count) == ("exited", n)
            # A start by the user resets the count.
            await eng.start(always)
            assert eng.get(always).restart_count == 0
            await poll_until(lambda: eng.get(always).state.status == "restarting"
                             or eng.get(always).restart_count > 0)
            await eng.kill(always)
            assert eng.get(always).state.status == "exited"
            # rm -f of a container that keeps failing, whether it is running or waiting to restart.
            flappy = await with_policy(eng, ["sh", "-c", "sleep 0.2; exit 1"], "always")
            await poll_until(lambda: eng.get(flappy).restart_count >= 2)
            await eng.remove(flappy, force=True)
            with pytest.raises(errdefs.NotFound):
                eng.get(flappy)
            for cid in (onf, always, no):
                await eng.remove(cid, force=True)
            assert roots.leaks() == []
        finally:
            await eng.close()
    run(body())


def test_restart_policies_across_daemon_restart(roots):
    async def body():
        eng = await roots.open()
        try:
            always = await with_policy(eng, ["sleep", "1000"], "always")
            unless = await with_policy(eng, ["sleep", "1000"], "unless-stopped")
            crash = await with_policy(eng, ["sleep", "1000"], "always")
            await eng.stop(always, timeout=0)
            await eng.stop(unless, timeout=0)
            crash_pid = eng.get(crash).state.pid
        finally:
            await eng.close()
        # While the daemon is away, a container's process dies: its exit must trigger the policy.
        import os
        import signal
        os.kill(crash_pid, signal.SIGKILL)
        await asyncio.sleep(0.5)
        eng = await roots.open()
        try:
            await poll_until(lambda: eng.get(always).state.status == "running")
            await poll_until(lambda: eng.get(crash).state.status == "running" and eng.get(crash).restart_count == 1)
            assert eng.get(crash).state.pid != crash_pid
            await asyncio.sleep(0.5)
            assert eng.get(unless).state.status == "exited"
            for cid in (always, unless, crash):
                await eng.remove(cid, force=True)
            assert roots.leaks() == []
        finally:
            await eng.close()
    run(body())


# ---- events ----------------------------------------------------------------------------------

def test_event_log_replay_filters_and_live():
    from dockyard.engine.events import EventLog, matches

    async def body():
        log = EventLog(size=3)
        for i in range(5):  # the ring keeps the last 3
            log.emit("container", "start", f"c{i}", {"image": "busybox", "name": f"n{i}", "app": "x" if i % 2 else "y"})
        now = time.time_ns()
        past = [e async for e in log.stream(1, now)]
        assert [e["id"] for e in past] == ["c2", "c3", "c4"]
        assert past[0]["status"] == "start" and past[0]["from"] == "busybox"
        assert [e["id"] async for e in log.stream(1, now, {"label": ["app=x"]})] == ["c3"]
        assert [e["id"] async for e in log.stream(1, now, {"container": ["n4"], "event": ["start"]})] == ["c4"]
        assert [e async for e in log.stream(1, now, {"type": ["volume"]})] == []
        with pytest.raises(errdefs.InvalidArgument, match="invalid filter 'bogus'"):
            [e async for e in log.stream(0, now, {"bogus": ["1"]})]
        # Live: no window means no replay, then what happens next, until `until`.
        got = []

        async def reader():
            async for e in log.stream(0, time.time_ns() + 2_000_000_000, {"type": ["volume"]}):
                got.append(e)

        t = asyncio.ensure_future(reader())
        await asyncio.sleep(0.05)
        log.emit("volume", "create", "v1", {"driver": "local"})
        log.emit("container", "die", "c9", {"exitCode": 1})
        await asyncio.wait_for(t, 10)  # ends at `until`
        assert [(e["Type"], e["Action"], e["Actor"]["ID"]) for e in got] == [("volume", "create", "v1")]
        assert "status" not in got[0]  # legacy fields only for containers and images
        ev = log.emit("container", "exec_start: sh -c true", "c1", {"execID": "e"})
        assert matches(ev, {"event": ["exec_start"]}) and not matches(ev, {"event": ["exec_create"]})
    run(body())
