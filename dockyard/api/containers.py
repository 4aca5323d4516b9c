"""/containers/* handlers: wire parameters -> engine calls, engine objects -> render.

Only translation lives here; every state machine is the engine's. Things moby answers from the
request alone (bad condition, no stream chosen, bad filter) are rejected before the engine is called.
"""

import asyncio
import base64
import json
import os
import re
import struct
import tempfile
import time

from dockyard import errdefs
from dockyard.api import render
from dockyard.api.server import Hijack, Request, Response, Router, Stream, json_response, peer_hung_up

_STREAM_IDS = {"stdin": 0, "stdout": 1, "stderr": 2, "system": 3}
_CONTAINER_FILTERS = {"id", "name", "label", "status", "ancestor", "exited", "before", "since",
                      "health", "network", "volume", "publish", "expose", "is-task"}
_ENGINE_FILTERS = {"health", "network", "volume", "publish", "expose", "is-task"}
_STATES = {"created", "running", "paused", "restarting", "removing", "exited", "dead"}


def frame(stream: str, data: bytes) -> bytes:
    """pkg/stdcopy framing: [stream, 0, 0, 0, size uint32 BE] + payload."""
    return struct.pack(">BxxxL", _STREAM_IDS[stream], len(data)) + data


def parse_timestamp_ns(v: str | None, name: str) -> int:
    """``since``/``until`` as unix seconds with optional '.nanoseconds'; 0 = unset."""
    if not v:
        return 0
    sec, _, frac = v.partition(".")
    try:
        return int(sec) * 1_000_000_000 + (int(frac.ljust(9, "0")[:9]) if frac else 0)
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid value for {name}: {v!r}") from None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_until(v: str, now: float) -> float:
    """A prune ``until``: a Go duration before now ('24h', '1h30m'), unix seconds, or RFC3339."""
    if re.fullmatch(f"(?:{_DURATION.pattern})+", v):
        return now - sum(float(n) * _UNIT_S[u] for n, u in _DURATION.findall(v))
    try:
        return float(v)
    except ValueError:
        pass
    t = render.to_unix(v)
    if t == 0:
        raise errdefs.InvalidArgument(f"invalid filter 'until={v}': not a duration, timestamp or date")
    return t


def labels_match(labels: dict, wanted: list[str]) -> bool:
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


def filter_containers(eng, containers, all_: bool, limit: int, filters: dict) -> list:
    """moby's list rules over the engine's newest-first list: without ``all`` only running ones,
    unless a status filter or a positive limit is given (``docker ps -n 3`` shows exited ones)."""
    for k in filters:
        if k not in _CONTAINER_FILTERS:
            raise errdefs.InvalidArgument(f"invalid filter '{k}'")
    for s in filters.get("status", []):
        if s not in _STATES:
            raise errdefs.InvalidArgument(f"invalid filter 'status={s}'")
    if filters.get("status"):
        all_ = True
    for p in filters.get("name", []):
        try:
            re.compile(p)
        except re.error as e:
            raise errdefs.InvalidArgument(f"invalid filter 'name={p}': {e}") from None
    out = list(containers)
    for key, keep_older in (("before", True), ("since", False)):
        for ref in filters.get(key, []):
            pivot = eng.get(ref).id
            ids = [c.id for c in out]
            if pivot in ids:
                i = ids.index(pivot)
                out = out[i + 1:] if keep_older else out[:i]
            else:
                out = []
    res = []
    for c in out:
        if not all_ and limit <= 0 and not c.state.running:
            continue
        if filters.get("id") and not any(c.id.startswith(p) for p in filters["id"]):
            continue
        if filters.get("name") and not any(re.search(p, c.name) for p in filters["name"]):
            continue
        if filters.get("label") and not labels_match((c.config or {}).get("Labels") or {}, filters["label"]):
            continue
        if filters.get("status") and c.state.status not in filters["status"]:
            continue
        if filters.get("exited"):
            if c.state.status != "exited" or str(c.state.exit_code) not in filters["exited"]:
                continue
        if filters.get("ancestor") and not any(_is_ancestor(eng, c, a) for a in filters["ancestor"]):
            continue
        res.append(c)
    return res[:limit] if limit > 0 else res


def _is_ancestor(eng, c, ref: str) -> bool:
    if c.image == ref or c.image_id == ref or c.image_id.removeprefix("sha256:").startswith(ref):
        return True
    try:
        return eng.images.resolve(ref).id == c.image_id
    except errdefs.DockyardError:
        return False


def _proc_stat(pid: int) -> tuple[int, str, str] | None:
    """(ppid, cmdline, state) from /proc/<pid>; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().rstrip(b"\0").split(b"\0")
    except OSError:
        return None
    comm_end = stat.rfind(")")
    fields = stat[comm_end + 2:].split()
    cmd = " ".join(a.decode(errors="replace") for a in argv if a) or "[" + stat[stat.find("(") + 1:comm_end] + "]"
    return int(fields[1]), cmd, fields[0]


def container_pids(init_pid: int) -> list[int]:
    """PIDs in the cgroup of the container's init (read from the kernel, so exec'd processes count),
    falling back to init and its descendants when the cgroup is not readable."""
    try:
        with open(f"/proc/{init_pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        for base in ([f"/sys/fs/cgroup/pids{path}"] if "pids" in ctrls.split(",") else
                     [f"/sys/fs/cgroup/unified{path}", f"/sys/fs/cgroup{path}"] if ctrls == "" else []):
            try:
                with open(os.path.join(base, "cgroup.procs")) as f:
                    pids = sorted(int(x) for x in f.read().split())
                if init_pid in pids:
                    return pids
            except OSError:
                continue
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (st := _proc_stat(int(d))):
            kids.setdefault(st[0], []).append(int(d))
    out, todo = [], [init_pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return sorted(out)


def check_ps_args(ps_args: str) -> None:
    """moby refuses ps arguments that rename the PID column (e.g. ``-o user=PID``): the PID
    column is how the container's rows are found."""
    for key, value in re.findall(r"\s+(\S*)=\s*(PID\S*)", ps_args):
        if key != "pid":
            raise errdefs.InvalidArgument(f'specifying "{key}={value}" is not allowed')


def parse_ps_output(output: str, pids) -> dict:
    """The host's ``ps`` output -> Docker's top body, keeping the rows of ``pids``.

    Fields split on ASCII whitespace; the fields past the last title are joined with one space
    into the last column (CMD has spaces). A thread row (PID "-", from ``-L``/``m``) belongs to
    the process row above it."""
    lines = output.split("\n")
    titles = lines[0].split()
    if "PID" not in titles:
        raise errdefs.Internal("Couldn't find PID field in ps output")
    col, keep, procs = titles.index("PID"), False, []
    want = set(pids)
    for line in lines[1:]:
        fields = line.split()
        fields = fields[:len(titles) - 1] + [" ".join(fields[len(titles) - 1:])]
        if len(fields) <= col or not line.strip():
            continue
        if fields[col] == "-":
            if keep:
                procs.append(fields)
            continue
        try:
            keep = int(fields[col]) in want
        except ValueError:
            raise errdefs.Internal(f"Unexpected pid '{fields[col]}'") from None
        if keep:
            procs.append(fields)
    return {"Titles": titles, "Processes": procs}


def run_ps(ps_args: str, pids) -> dict:
    """Docker's top: the host's ps with ``ps_args`` (default -ef), narrowed to ``pids`` with -q
    when ps accepts it (it does not with forest listings such as ``f``); worker thread."""
    import subprocess

    check_ps_args(ps_args)
    args = ps_args.split() or ["-ef"]
    res = subprocess.run(["ps", *args, "-q" + ",".join(map(str, pids))], capture_output=True, text=True)
    if res.returncode != 0:
        res = subprocess.run(["ps", *args], capture_output=True, text=True)
    if res.returncode != 0:
        first = res.stderr.split("\n", 1)[0].strip()
        raise errdefs.Internal(first or f"ps: exit status {res.returncode}")
    return parse_ps_output(res.stdout, pids)


DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
_CTRL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(spec: str) -> bytes:
    """Docker's detach-key syntax ("ctrl-p,ctrl-q", "a,ctrl-@") -> the byte sequence it stands for."""
    out = bytearray()
    for key in spec.split(","):
        low = key.lower()
        if len(key) == 1 and key.isascii():
            out.append(ord(key))
        elif low.startswith("ctrl-") and len(low) == 6 and "a" <= low[5] <= "z":
            out.append(ord(low[5]) - ord("a") + 1)
        elif low.startswith("ctrl-") and len(low) == 6 and low[5] in _CTRL:
            out.append(_CTRL[low[5]])
        else:
            raise errdefs.InvalidArgument(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


class DetachMatcher:
    """Finds the detach sequence in a stdin stream. Bytes that may start it are held back until
    the sequence completes (detach: they are never sent) or breaks (they are sent after all)."""

    def __init__(self, keys: bytes):
        self.keys, self.held = keys, b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """-> (bytes to forward, detach now?)."""
        out = bytearray()
        for b in data:
            if b == self.keys[len(self.held)]:
                self.held += bytes([b])
                if self.held == self.keys:
                    self.held = b""
                    return bytes(out), True
                continue
            out += self.held
            self.held = b""
            if b == self.keys[0]:
                self.held = bytes([b])
                if self.held == self.keys:
                    self.held = b""
                    return bytes(out), True
            else:
                out.append(b)
        return bytes(out), False


def session_pump(sess, tty: bool, want_stdin: bool, stdin_once: bool, detach_keys: bytes = b""):
    """The Hijack ``run`` that copies a hijacked socket to and from an engine session (attach, exec).
    With ``detach_keys``, that sequence on stdin ends the connection and leaves the process running."""

    async def run(reader, writer, early: bytes):
        matcher = DetachMatcher(detach_keys) if detach_keys and want_stdin else None

        async def pump_stdin():
            data = early
            while True:
                if data and want_stdin:
                    detached = False
                    if matcher:
                        data, detached = matcher.feed(data)
                    if data:
                        await sess.write_stdin(data)
                    if detached:
                        await sess.detach()  # the connection ends; stdin stays open for a later attach
                        return
                data = await reader.read(65536)
                if not data:
                    break
            # EOF is a half-close (CLI without -i, or stdin at its end), not a disconnect.
            if want_stdin and stdin_once:
                await sess.close_stdin()
            while not peer_hung_up(writer):
                await asyncio.sleep(0.5)

        async def pump_out():
            try:
                async for stream, data in sess.output():
                    writer.write(data if tty else frame(stream, data))
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                raise
            except Exception as e:  # noqa: BLE001 - report in-band, the status is long gone
                if not tty:
                    writer.write(frame("system", str(e).encode()))
                    await writer.drain()

        out_t = asyncio.create_task(pump_out())
        in_t = asyncio.create_task(pump_stdin())
        try:
            await asyncio.wait({out_t, in_t}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (out_t, in_t):
                t.cancel()
            await asyncio.gather(out_t, in_t, return_exceptions=True)
            await sess.close()

    return run


def setup(router: Router, eng) -> None:
    async def create(req: Request):
        body = await req.json()
        host_config = body.pop("HostConfig", None) or {}
        networking = body.pop("NetworkingConfig", None) or {}
        for key, part in (("HostConfig", host_config), ("NetworkingConfig", networking)):
            if not isinstance(part, dict):
                raise errdefs.InvalidArgument(f"invalid {key}: expected a JSON object")
        if not body.get("Image"):
            raise errdefs.InvalidArgument("config: Image is required")
        cid, warnings = await eng.create_container(req.q("name") or "", body, host_config, networking)
        return json_response({"Id": cid, "Warnings": list(warnings or [])}, 201)

    async def list_(req: Request):
        filters = req.filters()
        limit = req.qint("limit", -1)
        # The filters below need engine knowledge (mounts, networks, health): the engine applies them.
        deep = {k: v for k, v in filters.items() if k in _ENGINE_FILTERS}
        cs = filter_containers(eng, eng.list(all=True, filters=deep), req.qbool("all"), limit, filters)
        size = req.qbool("size")
        return json_response([render.container_summary(c, size) for c in cs])

    async def inspect(req: Request):
        return json_response(render.container_inspect(eng.get(req.params["id"]), req.qbool("size")))

    async def start(req: Request):
        await req.body()  # pre-1.24 clients send a HostConfig here; ignored like moby does
        await eng.start(req.params["id"])

    async def stop(req: Request):
        await eng.stop(req.params["id"], timeout=req.qint("t"), signal=req.q("signal") or None)

    async def kill(req: Request):
        await eng.kill(req.params["id"], signal=req.q("signal") or "KILL")

    async def restart(req: Request):
        await eng.restart(req.params["id"], timeout=req.qint("t"))

    async def remove(req: Request):
        await eng.remove(req.params["id"], force=req.qbool("force"), volumes=req.qbool("v"))

    async def rename(req: Request):
        name = req.q("name")
        if not name:
            raise errdefs.InvalidArgument("Neither old nor new names may be empty")
        await eng.rename(req.params["id"], name)

    async def resize(req: Request):
        h, w = req.qint("h", 0), req.qint("w", 0)
        await eng.resize(req.params["id"], h, w)
        return Response(200)

    async def wait(req: Request):
        cond = req.q("condition") or "not-running"
        if cond not in ("not-running", "next-exit", "removed"):
            raise errdefs.InvalidArgument(f'invalid condition: "{cond}"')
        ref = eng.get(req.params["id"]).id  # 404 as a status, not inside the body

        async def body():
            # Headers are flushed before this runs: `docker run` sends start only after they arrive.
            try:
                code = await eng.wait(ref, condition=cond)
                res = {"StatusCode": code, "Error": None}
            except errdefs.DockyardError as e:
                res = {"StatusCode": -1, "Error": {"Message": str(e)}}
            yield json.dumps(res).encode() + b"\n"

        return Stream(body())

    async def logs(req: Request):
        c = eng.get(req.params["id"])
        stdout, stderr = req.qbool("stdout"), req.qbool("stderr")
        if not (stdout or stderr):
            raise errdefs.InvalidArgument("Bad parameters: you must choose at least one stream")
        tail = req.q("tail", "all")
        if tail in ("all", ""):
            tail_n = -1
        else:
            try:
                tail_n = int(tail)
            except ValueError:
                raise errdefs.InvalidArgument(f"invalid value for tail: {tail!r}") from None
        since = parse_timestamp_ns(req.q("since"), "since")
        until = parse_timestamp_ns(req.q("until"), "until")
        ts = req.qbool("timestamps")
        tty = bool((c.config or {}).get("Tty"))
        batches = eng.logs(c.id, stdout=stdout, stderr=stderr, follow=req.qbool("follow"),
                           since_ns=since, until_ns=until, tail=tail_n, batched=True)

        def one(e):
            data = (render.rfc3339_nano_fixed(e.time_ns).encode() + b" " + e.data) if ts else e.data
            return data if tty else frame(e.stream, data)

        async def body():
            async for batch in batches:  # one chunk per read of the log, not one per line
                yield b"".join(map(one, batch))

        ctype = "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream"
        return Stream(body(), ctype)

    async def attach(req: Request):
        c = eng.get(req.params["id"])
        tty = bool((c.config or {}).get("Tty"))
        want_stdin = req.qbool("stdin")
        stdin_once = bool((c.config or {}).get("StdinOnce")) and not tty  # moby: a TTY's stdin stays open
        keys = parse_detach_keys(req.q("detachKeys") or DEFAULT_DETACH_KEYS)
        # Subscribe before the 101 goes out, so output of a container started right after is kept.
        sess = await eng.attach(c.id, stdin=want_stdin, stdout=req.qbool("stdout"), stderr=req.qbool("stderr"),
                                logs=req.qbool("logs"), stream=req.qbool("stream"))

        run = session_pump(sess, tty, want_stdin, stdin_once, keys)
        ctype = "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream"
        return Hijack(run, ctype, cleanup=sess.close)

    async def top(req: Request):
        c = eng.get(req.params["id"])
        if not c.state.running or not c.state.pid:
            raise errdefs.Conflict(f"container {c.id} is not running")
        pids = await asyncio.to_thread(container_pids, c.state.pid)
        return json_response(await asyncio.to_thread(run_ps, req.q("ps_args") or "", pids))

    async def stats(req: Request):
        # docker-py sends stream=False, the CLI stream=0; absent means stream (moby's default).
        stream = req.qbool("stream", True)
        samples = eng.stats(req.params["id"], stream=stream, one_shot=req.qbool("one-shot"))
        if not stream:  # one sample: a plain body (the CLI asks this for every container at once)
            return json_response(await anext(samples))

        async def body():
            async for s in samples:
                yield json.dumps(s).encode() + b"\n"

        return Stream(body())

    def path_stat_header(st: dict) -> tuple:
        return ("X-Docker-Container-Path-Stat", base64.b64encode(json.dumps(st).encode()).decode())

    async def archive_get(req: Request):
        path = req.q("path")
        if not path:
            raise errdefs.InvalidArgument("path is required")
        if req.method == "HEAD":
            st = await eng.archive_stat(req.params["id"], path)
            return Response(200, headers=[path_stat_header(st)])
        st, tar = await eng.get_archive(req.params["id"], path)

        async def body():
            try:
                while chunk := await asyncio.to_thread(tar.read, 1 << 20):
                    yield chunk
            finally:
                tar.close()

        return Stream(body(), "application/x-tar", headers=[path_stat_header(st)])

    async def archive_put(req: Request):
        path = req.q("path")
        if not path:
            raise errdefs.InvalidArgument("path is required")
        eng.get(req.params["id"])  # 404 before reading the body
        with tempfile.SpooledTemporaryFile(32 << 20) as tar:
            async for chunk in req.chunks():
                await asyncio.to_thread(tar.write, chunk)
            tar.seek(0)
            await eng.put_archive(req.params["id"], path, tar, req.qbool("noOverwriteDirNonDir"),
                                  req.qbool("copyUIDGID"))
        return Response(200)

    async def changes(req: Request):
        return json_response(await eng.changes(req.params["id"]) or None)

    async def export(req: Request):
        tar = await eng.export(req.params["id"])

        async def body():
            try:
                while chunk := await asyncio.to_thread(tar.read, 1 << 20):
                    yield chunk
            finally:
                tar.close()

        return Stream(body(), "application/x-tar")

    async def commit(req: Request):
        ref = req.q("container")
        if not ref:
            raise errdefs.InvalidArgument("container is required")
        raw = await req.body()
        try:
            config = json.loads(raw) if raw.strip() else None
        except ValueError as e:
            raise errdefs.InvalidArgument(f"invalid JSON body: {e}") from None
        if config is not None and not isinstance(config, dict):
            raise errdefs.InvalidArgument("the commit body must be a JSON object (a container Config)")
        # The CLI repeats changes=; docker-py sends one value that may hold several lines.
        changes = [line for v in req.query.get("changes") or [] for line in v.splitlines()]
        image = await eng.commit(ref, repo=req.q("repo") or "", tag=req.q("tag") or "",
                                 comment=req.q("comment") or "", author=req.q("author") or "",
                                 pause=req.qbool("pause", True), changes=changes, config=config)
        return json_response({"Id": image.id}, 201)

    async def prune(req: Request):
        filters = req.filters()
        for k in filters:
            if k not in ("label", "label!", "until"):
                raise errdefs.InvalidArgument(f"invalid filter '{k}'")
        now = time.time()
        untils = [parse_until(v, now) for v in filters.get("until", [])]
        deleted = []
        for c in eng.list(all=True):
            if c.state.running:
                continue
            if untils and render.to_unix(c.created) >= min(untils):
                continue
            labels = (c.config or {}).get("Labels") or {}
            if filters.get("label") and not labels_match(labels, filters["label"]):
                continue
            if any(labels_match(labels, [w]) for w in filters.get("label!", [])):
                continue
            try:
                await eng.remove(c.id)
                deleted.append(c.id)
            except errdefs.NotFound:
                pass
            except errdefs.Conflict:
                pass  # started meanwhile
        return json_response({"ContainersDeleted": deleted or None, "SpaceReclaimed": 0})

    async def update(req: Request):
        body = await req.json()
        if not isinstance(body, dict):
            raise errdefs.InvalidArgument("invalid update body: expected a JSON object")
        warnings = await eng.update(req.params["id"], body)
        return json_response({"Warnings": warnings})

    async def pause(req: Request):
        await eng.pause(req.params["id"])

    async def unpause(req: Request):
        await eng.unpause(req.params["id"])

    # ---- exec ----
    async def exec_create(req: Request):
        body = await req.json()
        cmd = body.get("Cmd")
        # Go decodes JSON keys case-insensitively: docker-py sends "detachKeys", the CLI "DetachKeys".
        keys = body.get("DetachKeys") or body.get("detachKeys") or ""
        if keys:
            try:  # checked now, as moby does: a start could not report it to a hijacked client
                parse_detach_keys(keys)
            except errdefs.InvalidArgument:
                raise errdefs.InvalidArgument(f"Invalid escape keys ({keys}) provided") from None
        eid = await eng.create_exec(
            req.params["id"], cmd, env=body.get("Env"), user=body.get("User") or "",
            workdir=body.get("WorkingDir") or "", tty=bool(body.get("Tty")), stdin=bool(body.get("AttachStdin")),
            stdout=bool(body.get("AttachStdout")), stderr=bool(body.get("AttachStderr")),
            privileged=bool(body.get("Privileged")), detach_keys=keys,
            console_size=body.get("ConsoleSize"))
        return json_response({"Id": eid}, 201)

    async def exec_start(req: Request):
        body = await req.json()
        ex = eng.inspect_exec(req.params["id"])
        detach = bool(body.get("Detach"))
        tty = ex.tty
        try:
            sess = await eng.start_exec(ex.id, detach=detach, tty=body.get("Tty"),
                                        console_size=body.get("ConsoleSize"))
        except errdefs.InvalidArgument as e:
            if detach:
                raise
            # moby reports a process that could not start inside the stream (the exit code,
            # 126/127, is in the exec's inspect), not as a status.
            msg = str(e).encode() + b"\r\n"

            async def report(reader, writer, early):
                writer.write(msg if tty else frame("stdout", msg))
                await writer.drain()

            return Hijack(report, "application/vnd.docker.raw-stream")
        if sess is None:
            return Response(200)
        ctype = "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream"
        # stdin EOF always closes the exec's stdin: `echo x | docker exec -i c cat` must end.
        # The detach keys come from the exec's create body (moby), default ctrl-p,ctrl-q.
        keys = parse_detach_keys(ex.detach_keys or DEFAULT_DETACH_KEYS)
        return Hijack(session_pump(sess, tty, ex.open_stdin, True, keys), ctype, cleanup=sess.close)

    async def exec_resize(req: Request):
        await eng.resize_exec(req.params["id"], req.qint("h", 0), req.qint("w", 0))
        return Response(200)

    async def exec_inspect(req: Request):
        return json_response(render.exec_inspect(eng.inspect_exec(req.params["id"])))

    C = r"/containers/(?P<id>[^/]+)"
    E = r"/exec/(?P<id>[^/]+)"
    router.add("POST", C + "/exec", exec_create)
    router.add("POST", C + "/pause", pause)
    router.add("POST", C + "/update", update)
    router.add("POST", C + "/unpause", unpause)
    router.add("POST", E + "/start", exec_start)
    router.add("POST", E + "/resize", exec_resize)
    router.add("GET", E + "/json", exec_inspect)
    router.add("POST", "/containers/create", create)
    router.add("GET", "/containers/json", list_)
    router.add("POST", "/containers/prune", prune)
    router.add("GET", C + "/json", inspect)
    router.add("POST", C + "/start", start)
    router.add("POST", C + "/stop", stop)
    router.add("POST", C + "/kill", kill)
    router.add("POST", C + "/restart", restart)
    router.add("DELETE", C, remove)
    router.add("POST", C + "/rename", rename)
    router.add("POST", C + "/resize", resize)
    router.add("POST", C + "/wait", wait)
    router.add("GET", C + "/logs", logs)
    router.add("POST", C + "/attach", attach)
    router.add("GET", C + "/top", top)
    router.add("GET", C + "/stats", stats)
    router.add("GET", C + "/changes", changes)
    router.add("GET", C + "/export", export)
    router.add("POST", "/commit", commit)
    router.add("GET", C + "/archive", archive_get)
    router.add("PUT", C + "/archive", archive_put)

