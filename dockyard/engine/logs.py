"""Container logs: reading conmon's k8s-file log (with rotated files) and rotating it by size.

Rotation is json-file's: when the log exceeds max-size, ``log`` -> ``log.1`` -> ... up to
max-file-1 kept files, then conmon is asked to reopen its path. Renaming is safe against a writer:
conmon keeps writing to the renamed file until it reopens, so no line is lost or split between files.
Followers switch files through ``dockyard.runtime.logfile.follow``.
"""

import asyncio
import os

from dockyard.engine import LogEntry
from dockyard.runtime import logfile


async def read_logs(c, engine, stdout, stderr, follow, since_ns, until_ns, tail):
    """Async iterator of LogEntry for container ``c`` (see Engine.logs)."""
    want = {"stdout": stdout, "stderr": stderr}
    stop = engine._exited.get(c.id) if follow else None
    # History up to a fixed offset, then follow from exactly there: no gap, no duplicate.
    offset = logfile.current_offset(c.log_path)
    history = await asyncio.to_thread(
        lambda: list(logfile.read_entries(c.log_path, since_ns, until_ns, tail, end_offset=offset)))
    for stream, line, t in history:
        if want.get(stream):
            yield LogEntry(stream, line, t)
    if stop is None:
        return
    async for stream, line, t in logfile.follow(c.log_path, offset, stop):
        if want.get(stream) and (not until_ns or t <= until_ns):
            yield LogEntry(stream, line, t)


class LogRotator:
    """Every 0.5 s, rotate the logs of running containers whose LogConfig has max-size and max-file>1."""

    def __init__(self, engine):
        self._engine = engine
        self._tracked: dict[str, tuple] = {}
        self._task = None
        for c in engine._containers.values():
            if c.state.running:
                self.track(c)

    def track(self, c):
        from dockyard.engine.config import parse_size

        conf = (c.host_config.get("LogConfig") or {}).get("Config") or {}
        size, files = parse_size(conf.get("max-size")), int(conf.get("max-file") or 1)
        if size and files > 1:
            self._tracked[c.id] = (c.log_path, size, files)
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._run())

    def untrack(self, cid):
        self._tracked.pop(cid, None)

    def stop(self):
        if self._task:
            self._task.cancel()
            self._task = None

    async def _run(self):
        while self._tracked:
            await asyncio.sleep(0.5)
            for cid, (path, size, files) in list(self._tracked.items()):
                try:
                    if os.path.getsize(path) > size:
                        await asyncio.to_thread(self._rotate, cid, path, files)
                except OSError:
                    continue
        self._task = None

    def _rotate(self, cid, path, files):
        for n in range(files - 1, 1, -1):
            if os.path.exists(f"{path}.{n - 1}"):
                os.replace(f"{path}.{n - 1}", f"{path}.{n}")
        os.replace(path, f"{path}.1")
        self._engine.runtime.reopen_log(cid)
