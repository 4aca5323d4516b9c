"""Health checks: Config.Healthcheck probes, each run as an exec in the running container.

One asyncio task per running container with a healthcheck: it sleeps Interval, runs the probe with
Timeout (a probe that overruns is killed and counts as a failure with exit code -1, as in Docker),
and keeps State.health = {Status, FailingStreak, Log} with the last 5 results. Failures inside
StartPeriod do not count while the container is still "starting". The task is started with the
container (and for running containers when the daemon opens) and cancelled when it exits.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

from dockyard import errdefs

DEFAULT_INTERVAL = DEFAULT_TIMEOUT = 30 * 10**9  # ns, Docker's defaults
DEFAULT_RETRIES = 3
MAX_LOG = 5
MAX_OUTPUT = 4096


def probe_command(hc: dict | None) -> list | None:
    """The argv of the probe, or None when there is no (or a NONE) healthcheck."""
    test = (hc or {}).get("Test") or []
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return list(test[1:]) or None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])] if len(test) > 1 else None
    return None


def validate(hc: dict | None):
    """InvalidArgument for a healthcheck Docker would refuse at create."""
    if not hc:
        return
    test = hc.get("Test") or []
    if test and test[0] not in ("NONE", "CMD", "CMD-SHELL", ""):
        raise errdefs.InvalidArgument(f"invalid Healthcheck Test {test[0]!r}: must be NONE, CMD or CMD-SHELL")
    for k in ("Interval", "Timeout", "StartPeriod"):
        v = hc.get(k) or 0
        if v < 0 or (0 < v < 10**6):
            raise errdefs.InvalidArgument(f"Healthcheck {k} in Config must be at least 1ms (or 0 for the default)")
    if (hc.get("Retries") or 0) < 0:
        raise errdefs.InvalidArgument("Healthcheck Retries in Config must not be negative")


def _rfc3339(ns: int) -> str:
    t = time.gmtime(ns // 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ns % 10**9:09d}Z"


class HealthOps:
    """Mixed into Engine: uses ``get``, the exec calls, ``_db`` and ``_cev``."""

    def _init_health(self):
        self._health_tasks: dict[str, asyncio.Task] = {}

    def _start_health(self, c):
        """Begin probing a container that just started (or was re-adopted)."""
        self._stop_health(c.id)
        if probe_command(c.config.get("Healthcheck")) is None:
            return
        if not c.state.health or c.state.health.get("Status") not in ("starting", "healthy", "unhealthy"):
            c.state.health = {"Status": "starting", "FailingStreak": 0, "Log": []}
        self._health_tasks[c.id] = asyncio.get_running_loop().create_task(self._health_loop(c.id))

    def _stop_health(self, cid: str):
        t = self._health_tasks.pop(cid, None)
        if t is not None:
            t.cancel()

    async def _health_loop(self, cid: str):
        c = self.get(cid)
        hc = c.config.get("Healthcheck") or {}
        interval = (hc.get("Interval") or DEFAULT_INTERVAL) / 1e9
        start_period = (hc.get("StartPeriod") or 0) / 1e9
        started = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            c = self._containers.get(cid)
            if c is None or not c.state.running:
                return
            if c.state.status != "running":  # paused: Docker skips the probe
                continue
            result = await self._probe(c, hc)
            await self._record_health(c, hc, result, time.monotonic() - started < start_period)

    async def _probe(self, c, hc: dict) -> dict:
        timeout = (hc.get("Timeout") or DEFAULT_TIMEOUT) / 1e9
        start = time.time_ns()
        out = b""
        try:
            eid = await self.create_exec(c.id, probe_command(hc))
            sess = await self.start_exec(eid)
        except errdefs.DockyardError as e:
            return {"Start": _rfc3339(start), "End": _rfc3339(time.time_ns()), "ExitCode": -1, "Output": str(e)}

        async def collect():
            nonlocal out
            async for _stream, data in sess.output():
                if len(out) < MAX_OUTPUT:
                    out += data
            done = self._exec_done.get(eid)
            if done is not None:
                await done.wait()

        try:
            await asyncio.wait_for(collect(), timeout)
            code = self.get_exec(eid).exit_code
        except asyncio.TimeoutError:
            ex = self._execs.get(eid)
            if ex is not None and ex.pid:
                try:
                    os.kill(ex.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            await sess.close()
            code, out = -1, f"Health check exceeded timeout ({timeout:g}s)".encode()
        finally:
            self._spawn(self._forget_probe(eid))
        return {"Start": _rfc3339(start), "End": _rfc3339(time.time_ns()),
                "ExitCode": -1 if code is None else code,
                "Output": out[:MAX_OUTPUT].decode(errors="replace")}

    async def _forget_probe(self, eid: str):
        done = self._exec_done.get(eid)
        if done is not None:
            await done.wait()  # a killed probe: its exit is recorded (and its files removed) first
        self._execs.pop(eid, None)

    async def _record_health(self, c, hc: dict, result: dict, in_start_period: bool):
        h = dict(c.state.health or {"Status": "starting", "FailingStreak": 0, "Log": []})
        h["Log"] = (list(h.get("Log") or []) + [result])[-MAX_LOG:]
        old = h.get("Status")
        if result["ExitCode"] == 0:
            h["Status"], h["FailingStreak"] = "healthy", 0
        elif not (in_start_period and old == "starting"):
            h["FailingStreak"] = h.get("FailingStreak", 0) + 1
            if h["FailingStreak"] >= (hc.get("Retries") or DEFAULT_RETRIES):
                h["Status"] = "unhealthy"
        if not c.state.running:
            return  # exited while probing: the result is moot
        c.state.health = h
        await asyncio.to_thread(self._db.update_container, c)
        if h["Status"] != old:
            self._cev(c, "health_status: " + h["Status"])
