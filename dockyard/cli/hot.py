"""The commands people run in loops, without click: `exec` and `stats`, and what they share with
`run`/`start`/`attach` (detach keys).

``cli/entry.py`` calls these straight from a hand-parsed command line, ``cli/containers.py`` from
its click commands: one implementation, two front ends. Nothing here may import click (a
`dockyard exec` would pay ~20 ms for it).
"""

import os
import sys

from dockyard.cli import stream
from dockyard.cli.client import APIError, Client, quote
from dockyard.cli.errors import CLIError

_CTRL_KEYS = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def detach_key_bytes(spec: str) -> bytes:
    """docker's --detach-keys syntax ("ctrl-p,ctrl-q", "a,ctrl-@") -> the bytes typed; checked
    here so a bad value fails before anything is created (the daemon checks it too)."""
    out = bytearray()
    for key in spec.split(","):
        low = key.lower()
        if len(key) == 1 and key.isascii():
            out.append(ord(key))
        elif low.startswith("ctrl-") and len(low) == 6 and "a" <= low[5] <= "z":
            out.append(ord(low[5]) - ord("a") + 1)
        elif low.startswith("ctrl-") and len(low) == 6 and low[5] in _CTRL_KEYS:
            out.append(_CTRL_KEYS[low[5]])
        else:
            raise CLIError(f"Invalid detach keys ({spec}) provided", 125)
    return bytes(out)


class Detachable(stream.Attached):
    """An attach that knows when the user typed the detach keys.

    The daemon finds the keys in stdin and ends the stream, leaving the container running; the
    client watches for them too (as docker's CLI does) so that it then exits 0 at once instead of
    waiting for an exit that will not come. Should the daemon not end the stream within
    ``DETACH_GRACE`` seconds, the client ends it (docker's CLI does not wait at all; we give
    the daemon the time to read the keys first, which is what keeps the container's stdin open).
    """

    DETACH_GRACE = 2.0

    def __init__(self, client, cid, tty, stdin, detach_keys=""):
        self.client, self.cid, self.tty, self.stdin, self.raw = client, cid, tty, stdin, None
        self.keys = detach_key_bytes(detach_keys or "ctrl-p,ctrl-q")
        self.detached = False
        params = {"stream": 1, "stdin": 1 if stdin else None, "stdout": 1, "stderr": 1,
                  "detachKeys": detach_keys or None}  # sent only when given, like docker
        self._pending = client.hijack_send(f"/containers/{cid}/attach", params)

    @classmethod
    def exec_start(cls, client, eid, tty, stdin, console_size=None, detach_keys=""):
        self = super().exec_start(client, eid, tty, stdin, console_size)
        self.keys, self.detached = detach_key_bytes(detach_keys or "ctrl-p,ctrl-q"), False
        return self

    def _copy_stdin(self):
        from _socket import SHUT_RDWR, SHUT_WR  # the C module: socket.py costs start-up time

        recent = b""
        try:
            while True:
                data = os.read(0, 65536)
                if not data:
                    break
                window = recent + data  # the keys may span reads, or sit inside one (a paste)
                recent = window[-len(self.keys):]
                # Before the keys go out: the daemon ends the stream as soon as it has them, and
                # run() must then see that this was a detach, not wait for an exit.
                self.detached = self.keys in window
                self.sock.sendall(data)
                if self.detached:  # the daemon ends the stream; stdin stays open there
                    stream.start_thread(_shutdown, self.sock, SHUT_RDWR, self.DETACH_GRACE)
                    return
        except OSError:
            pass
        _shutdown(self.sock, SHUT_WR)


def _shutdown(sock, how, after=0.0):
    if after:
        import time

        time.sleep(after)
    try:
        sock.shutdown(how)  # wakes the reader of a blocked recv (it returns b"")
    except OSError:
        pass


def exec_command(c: Client, container: str, command, detach=False, interactive=False, tty=False, env=(),
                 user=None, workdir=None, privileged=False, detach_keys=""):
    """`exec`: create the exec, start it attached (or detached), exit with its exit code."""
    if tty and interactive and not os.isatty(0):
        raise CLIError("the input device is not a TTY", 1)
    c.get(f"/containers/{quote(container)}/json")  # docker checks existence first (a clean 404)
    envs = [e if "=" in e else f"{e}={os.environ[e]}" for e in env if "=" in e or e in os.environ]
    size = (stream.terminal_size() or (0, 0)) if tty else (0, 0)
    body = {"User": user or "", "Privileged": privileged, "Tty": tty, "AttachStdin": interactive and not detach,
            "AttachStderr": not detach, "AttachStdout": not detach, "Detach": detach, "Env": envs,
            "WorkingDir": workdir or "", "Cmd": list(command)}
    if detach_keys:
        detach_key_bytes(detach_keys)
        body["DetachKeys"] = detach_keys  # docker puts them in the create body for an exec
    if all(size):
        body["ConsoleSize"] = list(size)
    try:
        eid = c.post(f"/containers/{quote(container)}/exec", body=body)["Id"]
        if detach:
            c.post(f"/exec/{eid}/start", body={"Detach": True, "Tty": tty})
            return
        att = Detachable.exec_start(c, eid, tty, interactive, size if all(size) else None, detach_keys)
    except APIError as e:
        raise CLIError(f"Error response from daemon: {e.message}") from e
    if tty:
        stream.resize(c, eid, "exec")
        stream.watch_winch(c, eid, "exec")
    att.run()
    sys.stdout.flush()
    if att.detached:
        return  # the process runs on; it has no exit code yet
    code = c.get(f"/exec/{eid}/json").get("ExitCode")
    raise SystemExit(0 if code is None else int(code))


# -- stats --------------------------------------------------------------------------------------

STATS_TABLE = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}"
               "\t{{.BlockIO}}\t{{.PIDs}}")
STATS_HEADERS = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
                 "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
                 "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
_BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]


def bytes_size(size: float) -> str:
    """go-units BytesSize: binary units, %.4g ("64MiB", "1.367MiB")."""
    i = 0
    while size >= 1024.0 and i < len(_BINARY) - 1:
        size /= 1024.0
        i += 1
    return f"{size:.4g}{_BINARY[i]}"


def stats_row(ref: str, s: dict) -> dict:
    """One table row from a StatsResponse, computed client-side as docker's stats_helpers.go does."""
    from dockyard.cli.format import human_size

    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    sys_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    ncpu = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
    cpu_pct = cpu_delta / sys_delta * ncpu * 100.0 if cpu_delta > 0 and sys_delta > 0 else 0.0
    mem = s.get("memory_stats") or {}
    extra = mem.get("stats") or {}
    usage = mem.get("usage", 0) - extra.get("total_inactive_file", extra.get("inactive_file", 0))
    usage = max(usage, 0)
    limit = mem.get("limit", 0)
    nets = (s.get("networks") or {}).values()
    blk = (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    rd = sum(b.get("value", 0) for b in blk if b.get("op", "").lower() == "read")
    wr = sum(b.get("value", 0) for b in blk if b.get("op", "").lower() == "write")
    running = s.get("read") != "0001-01-01T00:00:00Z"
    return {"ID": (s.get("id") or ref)[:12], "Container": ref, "Name": (s.get("name") or "").lstrip("/") or "--",
            "CPUPerc": f"{cpu_pct:.2f}%" if running else "0.00%",
            "MemUsage": f"{bytes_size(usage)} / {bytes_size(limit)}" if running else "0B / 0B",
            "MemPerc": f"{usage / limit * 100.0 if limit else 0.0:.2f}%",
            "NetIO": f"{human_size(sum(n.get('rx_bytes', 0) for n in nets))} / "
                     f"{human_size(sum(n.get('tx_bytes', 0) for n in nets))}",
            "BlockIO": f"{human_size(rd)} / {human_size(wr)}",
            "PIDs": str((s.get("pids_stats") or {}).get("current", 0))}


def stats_command(c: Client, containers=(), all_=False, no_stream=False, no_trunc=False, fmt=None):
    """`stats`: a table of every container's sample, redrawn each second unless ``no_stream``."""
    import time

    from dockyard.cli.format import check_format, render_rows

    fmt = fmt or STATS_TABLE
    check_format(fmt)
    while True:
        refs = list(containers) or [x["Id"] for x in c.get("/containers/json", {"all": 1 if all_ else None}) or []]
        rows, failed = [], False
        for ref, s in zip(refs, stats_samples(c, refs)):
            if isinstance(s, APIError):
                print(f"Error response from daemon: {s.message}", file=sys.stderr)
                failed = True
                continue
            row = stats_row(ref, s)
            if no_trunc:
                row["ID"] = s.get("id") or ref
            rows.append(row)
        if failed:
            raise SystemExit(1)
        if not no_stream:
            sys.stdout.write("\033[2J\033[H")  # docker redraws the whole screen each second
        sys.stdout.write(render_rows(fmt, rows, STATS_HEADERS))
        sys.stdout.flush()
        if no_stream:
            return
        time.sleep(1)


def stats_samples(c: Client, refs) -> list:
    """One one-shot sample per container, all asked at once (pipelined on one connection; docker's
    CLI asks for all at once too). one-shot answers without moby's 1 s wait for a second sample:
    our daemon fills ``precpu_stats`` from the previous sample (the last round of the loop), or
    from the container's start. -> a sample or the APIError, in the order of ``refs``."""
    return c.get_many([(f"/containers/{quote(ref)}/stats", {"stream": 0, "one-shot": 1}) for ref in refs])
