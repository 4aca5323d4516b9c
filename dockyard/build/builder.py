"""The builder: runs a parsed Dockerfile against the engine and the image store, step by step.

Every step makes one image on top of the previous one, as Docker's legacy builder does:
  * RUN     a real container (engine.create_container/attach/start/wait), its upper dir committed
            with ImageStore.commit (whiteouts for deletions), then the container removed.
            Heredocs follow BuildKit (``_run_command``). ``--mount`` becomes HostConfig Mounts/
            Tmpfs: cache = a persistent dir ``<data-root>/build/cache-mounts/<id>`` (flock for
            ``sharing``), bind = a context path (a throwaway copy when rw) or a path in an
            overlay of a stage/image mounted here, tmpfs = a tmpfs; secret/ssh are refused.
            Mount points the image lacked (also for the engine's /etc/hosts, hostname,
            resolv.conf) are removed from the upper dir before the commit, as BuildKit removes
            its stubs, so neither the mounts nor their stubs reach the layer;
  * COPY/ADD/WORKDIR  a rootfs prepared from the step's parent image (prepare_rootfs), mounted
            here, the files written into it through ``safepath`` (nothing from outside the
            context, no symlink escape in the context or in the image), committed, dropped;
            heredoc sources (``COPY <<EOF /f``) are files written to a temp dir first (0644);
  * metadata steps (ENV, CMD, LABEL...)  the same commit with an empty upper dir, which the store
            records as ``empty_layer: true``.
A step is looked up in the BuildCache first (parent image, expanded text, build args it sees, hash
of the files it reads, a RUN's mount specs and what its bind mounts read; never a cache mount's
contents). A failed build removes the images it made and their cache entries, so it
leaves nothing half-made; each container and rootfs it makes is removed in a ``finally``.
Output goes to ``emit(text)`` line by line in ``docker build``'s words.
"""

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import io
import itertools
import json
import os
import posixpath
import re
import secrets
import shutil
import stat
import tarfile
import tempfile

from dockyard import errdefs, safepath
from dockyard.build import dockerfile
from dockyard.build.cache import BuildCache, hash_tree, step_key
from dockyard.engine import sysmount
from dockyard.images import archive

DEFAULT_SHELL = ["/bin/sh", "-c"]
# where a RUN heredoc with a shebang is mounted as an executable file (BuildKit's place; /dev is a
# tmpfs in the container, so the mount point never reaches the layer)
_PIPES = "/dev/pipes"
# files the engine bind-mounts into every container; an image without them gets empty stubs made
# for the mounts, which Docker keeps out of commits (its "init" layer) and so do we
_ENGINE_FILES = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# ARGs Docker defines without a declaration; they never count as "not consumed"
_BUILTIN_ARGS = {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                 "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"}



class BuildError(errdefs.InvalidArgument):
    """A build that failed in a step; ``code`` is the exit code of a failed RUN (else None)."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


def _open_lock(path: str) -> int:
    """The lock file of a cache mount dir (BuildCache.prune takes the same lock)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _create_cache_dir(path: str, m) -> None:
    """Make a cache mount dir once: uid/gid/mode apply at creation, as in BuildKit. Made under a
    temp name and renamed, so it is never seen half-made (two shared users may race here)."""
    if os.path.isdir(path):
        return
    tmp = tempfile.mkdtemp(dir=os.path.dirname(path), prefix=".new-")
    os.chown(tmp, m.uid or 0, m.gid or 0)
    os.chmod(tmp, 0o755 if m.mode is None else m.mode)
    try:
        os.rename(tmp, path)
    except OSError:  # made meanwhile by a concurrent build
        os.rmdir(tmp)


def _missing_paths(root: str, target: str) -> list[str]:
    """``target`` and its ancestors that do not exist beneath ``root``, shallowest first."""
    parts = [p for p in target.split("/") if p]
    for i in range(1, len(parts) + 1):
        path = "/" + "/".join(parts[:i])
        try:
            os.close(safepath.open_beneath(root, path, os.O_PATH))
        except OSError:
            return ["/" + "/".join(parts[:j]) for j in range(i, len(parts) + 1)]
    return []


def _opaque(path: str) -> bool:
    """Whether an overlay upper directory hides what is below it (rm -rf + mkdir in the RUN)."""
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _nop(text: str, one_space: bool = False) -> str:
    """History ``created_by`` of a step without a command, in the legacy builder's spelling."""
    return ("/bin/sh -c #(nop) " if one_space else "/bin/sh -c #(nop)  ") + text


def archive_arch() -> str:
    import platform

    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _env_set(env: list, key: str, value: str) -> list:
    out = [e for e in env if e.partition("=")[0] != key]
    out.append(f"{key}={value}")
    # keep the position of an existing variable, as Docker does
    for i, e in enumerate(env):
        if e.partition("=")[0] == key:
            out = env[:i] + [f"{key}={value}"] + env[i + 1:]
            break
    return out


def _goq(words: list) -> str:
    """Go's ``%q`` of a []string, which the legacy builder's history lines use: ["a" "b"]."""
    return "[" + " ".join(json.dumps(w, ensure_ascii=False) for w in words) + "]"


def _env_dict(env: list) -> dict:
    return dict(e.partition("=")[::2] for e in env or ())


def _lookup_id(root: str, path: str, name: str) -> int:
    """uid/gid of ``name`` from the image's passwd/group file (read beneath the rootfs)."""
    if name.isdigit():
        return int(name)
    try:
        fd = safepath.open_beneath(root, path)
        with os.fdopen(fd) as f:
            for line in f:
                fields = line.strip().split(":")
                if len(fields) > 2 and fields[0] == name:
                    return int(fields[2])
    except (OSError, ValueError):
        pass
    raise errdefs.InvalidArgument(f"unable to find {'user' if 'passwd' in path else 'group'} {name}: no matching entries in {path}")


def _is_archive(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(6)
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head == b"\xfd7zXZ\x00":
        return True
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


class Builder:
    def __init__(self, eng, cache: BuildCache, emit, *, context_dir: str, dockerfile_text: str,
                 dockerfile_name: str = "Dockerfile", tags=(), build_args=None, target=None,
                 no_cache=False, labels=None, network_mode=""):
        self.eng, self.store, self.cache, self.emit = eng, eng.images, cache, emit
        self.context = context_dir
        self.tags = list(tags)
        self.build_args = {k: v for k, v in (build_args or {}).items() if v is not None}
        self.no_cache, self.network_mode = no_cache, network_mode or "default"
        self.df = dockerfile.parse(dockerfile_text, dockerfile_name)
        self.target = dockerfile.validate_stages(self.df, target)
        self.labels = labels or {}
        self.created: list[str] = []  # images this build made (removed again if it fails)
        self.used_args: set[str] = set()
        self.step, self.total = 0, 0
        self.tmp = os.path.join(os.path.dirname(self.store.root), "build", "tmp")
        os.makedirs(self.tmp, exist_ok=True)

    # -- driver -------------------------------------------------------------------------------

    def _needed(self) -> list[dockerfile.Stage]:
        """The target and the stages it needs, dependencies first."""
        order, seen = [], set()

        def visit(st):
            if st.index in seen:
                return
            seen.add(st.index)
            for _, j in dockerfile.stage_dependencies(self.df, st):
                visit(self.df.stages[j])
            order.append(st)

        visit(self.target)
        return order

    async def build(self) -> str:
        stages = self._needed()
        self.total = sum(1 + len(st.instructions) for st in stages) + (1 if self.labels else 0)
        self.global_scope = dockerfile.global_scope(self.df, self.build_args)
        self.used_args |= {n for i in self.df.global_args for n, _ in i.arg_pairs}
        results: dict[int, str] = {}
        try:
            for st in stages:
                results[st.index] = await self._build_stage(st, results)
            image_id = results[self.target.index]
            for t in self.tags:
                await asyncio.to_thread(self.store.tag, image_id, t)
        except BaseException:
            await self._undo()
            raise
        unused = sorted(set(self.build_args) - self.used_args - _BUILTIN_ARGS)
        if unused:
            self.emit(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        return image_id

    async def _undo(self):
        for image_id in reversed(self.created):
            self.cache.forget(image_id=image_id)
            with contextlib.suppress(errdefs.DockyardError):
                await asyncio.to_thread(self.store.delete, image_id, True)

    # -- stages --------------------------------------------------------------------------------

    async def _base(self, stage, results) -> str:
        name = stage.from_instruction.expand(stage.base, self.global_scope)
        if name.lower() != stage.name:  # FROM x AS x names the image x
            index = dockerfile.resolve_stage_ref(self.df, name)
            if index is not None:
                return self._stage_result(stage.from_instruction, index)
        if name == "scratch":
            return await self._scratch()
        try:
            return (await asyncio.to_thread(self.store.resolve, name)).id
        except errdefs.NotFound as e:
            raise stage.from_instruction.error(f"FROM {name}: {e} (pull it first)") from None

    def _stage_result(self, inst, index: int) -> str:
        if index not in self.results:  # a reference through a variable, unseen when planning
            raise inst.error(f"stage {self.df.stages[index].name or index} is referenced through a "
                             "variable; name it literally so it is built first")
        return self.results[index]

    async def _scratch(self) -> str:
        """A zero-layer base for ``FROM scratch``: the store makes images by commit, so the empty
        image is loaded once (as a docker-archive holding only a config) and reused by its ID."""
        config = json.dumps({"architecture": archive_arch(), "os": "linux", "config": {"Env": [DEFAULT_PATH]},
                             "rootfs": {"type": "layers", "diff_ids": []}, "history": []},
                            sort_keys=True, separators=(",", ":")).encode()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            manifest = json.dumps([{"Config": "config.json", "RepoTags": None, "Layers": []}]).encode()
            for name, data in (("config.json", config), ("manifest.json", manifest)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        buf.seek(0)
        (image_id,) = await asyncio.to_thread(self.store.load, buf)
        return image_id

    async def _exists(self, image_id: str) -> bool:
        try:
            await asyncio.to_thread(self.store.resolve, image_id)
            return True
        except errdefs.NotFound:
            return False

    def _step_header(self, inst) -> None:
        self.step += 1
        text = re.sub(r"\s*\n\s*", " ", inst.original.strip())
        self.emit(f"Step {self.step}/{self.total} : {text}\n")

    async def _build_stage(self, stage, results) -> str:
        self._step_header(stage.from_instruction)
        self.results = results
        self.image = await self._base(stage, results)
        self.emit(f" ---> {self.image[7:19]}\n")
        img = await asyncio.to_thread(self.store.resolve, self.image)
        self.cfg = json.loads(json.dumps((img.config or {}).get("config") or {}))
        self.cmd_set = False
        insts = list(stage.instructions)
        triggers = self.cfg.pop("OnBuild", None) or []
        if triggers:
            self.emit(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
            parsed = []
            for t in triggers:
                (inst,) = dockerfile.parse(f"FROM scratch\n{t}\n", "ONBUILD").stages[0].instructions
                if inst.cmd in ("ONBUILD", "FROM", "MAINTAINER"):
                    raise BuildError(f"{inst.cmd} isn't allowed as an ONBUILD trigger")
                inst.trigger_of_base = True
                parsed.append(inst)
            insts = parsed + insts
        if stage is self.target and self.labels:
            args = [w for k, v in sorted(self.labels.items()) for w in (json.dumps(k), json.dumps(v))]
            insts.append(dockerfile.Instruction("LABEL", args, original="LABEL " + " ".join(
                f"{a}={b}" for a, b in zip(args[::2], args[1::2])), filename=self.df.filename))
        sub = dockerfile.Stage(stage.index, stage.base, stage.name, stage.platform, stage.from_instruction, insts)
        base_env = _env_dict(self.cfg.get("Env"))
        for inst, scope in dockerfile.stage_scopes(sub, base_env, self.global_scope, self.build_args):
            if not getattr(inst, "trigger_of_base", False):
                self._step_header(inst)
            # the ARGs in scope: every name the stage declared that ENV does not shadow
            env_now = _env_dict(self.cfg.get("Env"))
            self.args = {k: v for k, v in scope.items() if k not in env_now}
            try:
                await self._dispatch(inst, scope)
            except errdefs.DockyardError:
                # the error text stays Docker's; this line says where (ONBUILD triggers: the FROM)
                line = stage.from_instruction.start_line if getattr(inst, "trigger_of_base", False) else inst.start_line
                self.emit(f"Step {self.step}/{self.total} failed ({inst.filename}:{line})\n")
                raise
            self.emit(f" ---> {self.image[7:19]}\n")
        return self.image

    # -- steps -----------------------------------------------------------------------------------

    async def _cached(self, text: str, make, args=None, sources: str = "") -> None:
        """Reuse the image of an identical earlier step, or ``await make()`` and remember it."""
        key = step_key(self.image, text, args, sources)
        if not self.no_cache:
            hit = self.cache.get(key)
            if hit and await self._exists(hit):
                self.emit(" ---> Using cache\n")
                self.image = hit
                return
        image_id = await make()
        self.created.append(image_id)
        self.cache.put(key, image_id)
        self.image = image_id

    async def _commit(self, created_by: str, write=None, author: str = "") -> str:
        """A new image on self.image with config self.cfg; ``write(root)`` changes the rootfs."""
        key = "build-" + secrets.token_hex(16)
        cfg = json.loads(json.dumps(self.cfg))
        try:
            mounts = await asyncio.to_thread(self.store.prepare_rootfs, key, self.image)
            if write is not None:
                await asyncio.to_thread(self._with_mount, mounts, write)
            img = await asyncio.to_thread(self.store.commit, key, cfg, None, (), "", author, created_by)
        finally:
            await asyncio.to_thread(self.store.remove_rootfs, key)
        return img.id

    def _with_mount(self, mounts, fn):
        target = tempfile.mkdtemp(dir=self.tmp, prefix="mnt-")
        try:
            sysmount.apply_rootfs(mounts, target)
            try:
                return fn(target)
            finally:
                sysmount.unmount(target)
        finally:
            os.rmdir(target)

    async def _dispatch(self, inst, scope) -> None:
        cmd = inst.cmd
        if cmd == "RUN":
            return await self._run(inst, scope)
        if cmd in ("COPY", "ADD"):
            return await self._copy(inst, scope)
        words = inst.expanded(scope)
        cfg = self.cfg
        author = ""
        if cmd == "ENV":
            text = " ".join(f"{k}={v}" for k, v in zip(words[::2], words[1::2]))
            for k, v in zip(words[::2], words[1::2]):
                cfg["Env"] = _env_set(cfg.get("Env") or [], k, v)
            created = _nop("ENV " + text)
        elif cmd == "LABEL":
            cfg["Labels"] = {**(cfg.get("Labels") or {}), **dict(zip(words[::2], words[1::2]))}
            created = _nop("LABEL " + " ".join(f"{k}={v}" for k, v in zip(words[::2], words[1::2])))
        elif cmd == "ARG":
            self.used_args |= {w.partition("=")[0] for w in words}
            created = _nop("ARG " + " ".join(words))
        elif cmd in ("CMD", "ENTRYPOINT"):
            value = list(inst.args) if inst.json else (cfg.get("Shell") or DEFAULT_SHELL) + list(inst.args)
            key = "Cmd" if cmd == "CMD" else "Entrypoint"
            cfg[key] = value
            if cmd == "CMD":
                self.cmd_set = True
            elif not self.cmd_set:  # an ENTRYPOINT drops the base image's CMD
                cfg["Cmd"] = None
            created = _nop(f"{cmd} {_goq(value)}")
        elif cmd == "SHELL":
            if not inst.json:
                raise inst.error("SHELL requires the arguments to be in JSON form")
            cfg["Shell"] = list(inst.args)
            created = _nop(f"SHELL {_goq(cfg['Shell'])}")
        elif cmd == "WORKDIR":
            path = words[0]
            if not path.startswith("/"):
                path = posixpath.join(cfg.get("WorkingDir") or "/", path)
            cfg["WorkingDir"] = posixpath.normpath(path)
            text = f"WORKDIR {cfg['WorkingDir']}"
            wd = cfg["WorkingDir"]

            def mkdir(root):
                os.close(safepath.mkdir_all(root, wd))
            return await self._cached(text, lambda: self._commit(_nop(text, True), mkdir))
        elif cmd == "USER":
            cfg["User"] = words[0]
            created = _nop("USER " + words[0])
        elif cmd == "EXPOSE":
            ports = []
            for w in words:
                port, _, proto = w.partition("/")
                if not re.fullmatch(r"\d+(-\d+)?", port):
                    raise inst.error(f"invalid containerPort: {port}")
                ports.append(f"{port}/{(proto or 'tcp').lower()}")
            cfg["ExposedPorts"] = {**(cfg.get("ExposedPorts") or {}), **{p: {} for p in ports}}
            created = _nop("EXPOSE " + " ".join(sorted(ports)))
        elif cmd == "VOLUME":
            paths = [p for w in words for p in ([w] if inst.json else w.split())]
            if not paths or any(not p.strip() for p in paths):
                raise inst.error("VOLUME specified can not be an empty string")
            cfg["Volumes"] = {**(cfg.get("Volumes") or {}), **{p: {} for p in paths}}
            created = _nop(f"VOLUME [{' '.join(paths)}]")  # Go's %v of the list
        elif cmd == "STOPSIGNAL":
            cfg["StopSignal"] = words[0]
            created = _nop("STOPSIGNAL " + words[0])
        elif cmd == "MAINTAINER":
            author = inst.args[0]
            created = _nop("MAINTAINER " + author)
        elif cmd == "ONBUILD":
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), inst.args[0]]
            created = _nop(f"ONBUILD {inst.args[0]}")
        elif cmd == "HEALTHCHECK":
            cfg["Healthcheck"] = self._healthcheck(inst, scope)
            created = _nop(f"HEALTHCHECK &{json.dumps(cfg['Healthcheck'])}")
        else:
            raise inst.error(f"{cmd} is not supported by this builder")
        await self._cached(created + json.dumps(cfg, sort_keys=True), lambda: self._commit(created, author=author))

    def _healthcheck(self, inst, scope) -> dict:
        if inst.args == ["NONE"]:
            return {"Test": ["NONE"]}
        command = inst.args[1:]
        hc = {"Test": ["CMD", *command] if inst.json else ["CMD-SHELL", " ".join(command)]}
        for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                          ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
            if inst.flags.get(flag):
                hc[key] = dockerfile.parse_duration(inst.expand(inst.flags[flag], scope))
        if inst.flags.get("retries"):
            hc["Retries"] = int(inst.expand(inst.flags["retries"], scope))
        return hc

    # -- RUN ---------------------------------------------------------------------------------------

    async def _run(self, inst, scope) -> None:
        command, script = self._run_command(inst)
        mounts = self._run_mounts(inst, scope)
        inputs = [await self._bind_input(inst, m) for m in mounts]
        args = dict(sorted(self.args.items()))
        self.used_args |= set(args)
        created = " ".join(command)
        if args:  # the legacy builder records the build args a RUN saw in its history
            created = f"|{len(args)} " + " ".join(f"{k}={v}" for k, v in args.items()) + " " + created
        # the mount specs (and what a bind mount reads) decide the result, a cache mount's
        # contents do not: BuildKit keys a step the same way
        sources = ""
        if mounts:
            sources = json.dumps([[*dataclasses.astuple(m), key] for m, (_, key) in zip(mounts, inputs)])
        if script is not None:
            sources += script  # the argv only names the script file; its text is the step
        await self._cached("RUN " + created + json.dumps(self.cfg, sort_keys=True),
                           lambda: self._run_container(command, args, created, mounts, inputs, script),
                           args, sources)

    def _run_command(self, inst) -> tuple[list[str], str | None]:
        """The argv of a RUN, and the text of a script to run as a file, if any.

        Heredocs follow BuildKit: a command that is nothing but one heredoc runs its body with the
        shell, or as an executable file (mounted under /dev/pipes) when the body starts with
        ``#!``; any other command line goes to the shell followed by the heredoc bodies and their
        terminators, so the shell itself feeds them (``<<EOF cat >f``, ``python3 <<EOF``, several
        on one line; a quoted name keeps the shell from expanding the body)."""
        shell = self.cfg.get("Shell") or DEFAULT_SHELL
        if inst.json:
            return list(inst.args), None
        text = inst.args[0]
        if not inst.heredocs:
            return shell + [text], None
        (first, *more) = inst.heredocs
        if not more and re.fullmatch(r"\s*<<-?\s*(['\"]?)" + re.escape(first.name) + r"\1\s*", text):
            if first.content.startswith("#!"):
                name = re.sub(r"[^A-Za-z0-9_.-]", "_", first.name).lstrip(".") or "script"
                return [f"{_PIPES}/{name}"], first.content
            return shell + [first.content], None
        return shell + [text + "\n" + "".join(h.content + h.name + "\n" for h in inst.heredocs)], None

    def _run_mounts(self, inst, scope) -> list:
        """The ``--mount`` options, expanded, checked, with targets made absolute."""
        out, seen = [], set()
        for value in inst.flags.get("mount", []):
            try:
                m = dockerfile.parse_mount(value, scope, inst.escape)
            except dockerfile.DockerfileError as e:
                raise inst.error(f"RUN: {e.reason}") from None
            if m.type in ("secret", "ssh"):
                raise inst.error(f"RUN --mount=type={m.type} is not supported by this builder "
                                 f"(it has no {m.type} store to mount from)")
            if m.type not in ("bind", "cache", "tmpfs"):
                raise inst.error(f"RUN --mount={value}: unsupported mount type {m.type!r}")
            target = posixpath.normpath(posixpath.join(self.cfg.get("WorkingDir") or "/", m.target))
            if target == "/" or target in seen or target == _PIPES:
                raise inst.error(f"RUN --mount={value}: target {target} can't be mounted on "
                                 "(the root, or already a mount of this step)")
            seen.add(target)
            if m.type == "cache" and m.from_:
                raise inst.error(f"RUN --mount={value}: a cache mount seeded from= is not supported by this builder")
            if m.type == "tmpfs" and m.size and not re.fullmatch(r"\d+[kmgKMG]?", m.size):
                raise inst.error(f"RUN --mount={value}: size must be bytes with an optional k, m or g suffix")
            out.append(dataclasses.replace(m, target=target))
        return out

    async def _bind_input(self, inst, m) -> tuple[str | None, str]:
        """What a bind mount reads: (image ID or None for the context, its cache key part)."""
        if m.type != "bind":
            return None, ""
        rel = posixpath.normpath("/" + (m.source or "")).lstrip("/")
        if not m.from_:
            def digest():
                host = safepath.resolve(self.context, rel)
                if not os.path.lexists(host):
                    raise inst.error(f"RUN --mount: source {m.source!r} not found in the build context")
                base = os.path.realpath(self.context)
                return hash_tree(base, os.path.relpath(host, base))
            return None, await asyncio.to_thread(digest)
        index = dockerfile.resolve_stage_ref(self.df, m.from_)
        if index is not None:
            image = self._stage_result(inst, index)
        else:
            try:
                image = (await asyncio.to_thread(self.store.resolve, m.from_)).id
            except errdefs.NotFound as e:
                raise inst.error(f"RUN --mount from={m.from_}: {e}") from None
        return image, image

    async def _run_container(self, command, args, created, mounts, inputs, script) -> str:
        env = list(self.cfg.get("Env") or [])
        names = {e.partition("=")[0] for e in env}
        env += [f"{k}={v}" for k, v in args.items() if k not in names]
        config = {"Image": self.image, "Cmd": command, "Entrypoint": [""], "Env": env,
                  "User": self.cfg.get("User") or "", "WorkingDir": self.cfg.get("WorkingDir") or "",
                  "AttachStdout": True, "AttachStderr": True,
                  "Labels": {}, "Volumes": None}
        host_config = {"NetworkMode": self.network_mode}
        async with contextlib.AsyncExitStack() as stack:
            binds, tmpfs = [], {}
            for m, (image, _) in zip(mounts, inputs):
                if m.type == "tmpfs":
                    opts = ([f"size={m.size}"] if m.size else []) + ["exec", "nosuid", "nodev"]
                    tmpfs[m.target] = ",".join(opts + (["ro"] if m.readonly else []))
                    continue
                if m.type == "cache":
                    source = await self._cache_dir(stack, m)
                elif image:
                    source = await self._image_source(stack, m, image)
                else:
                    source = await asyncio.to_thread(self._context_source, stack, m)
                binds.append({"Type": "bind", "Source": source, "Target": m.target, "ReadOnly": m.readonly})
            if script is not None:
                source = await asyncio.to_thread(self._script_dir, stack, command[0], script)
                binds.append({"Type": "bind", "Source": source, "Target": _PIPES, "ReadOnly": True})
            if binds:
                host_config["Mounts"] = binds
            if tmpfs:
                host_config["Tmpfs"] = tmpfs
            stubs, parents = await self._mount_stubs([m.target for m in mounts] + _ENGINE_FILES)
            cid, _ = await self.eng.create_container(None, config, host_config, {})
            try:
                self.emit(f" ---> Running in {cid[:12]}\n")
                session = await self.eng.attach(cid, stdin=False, stdout=True, stderr=True, stream=True)
                try:
                    await self.eng.start(cid)
                    async for _stream, data in session.output():
                        self.emit(data.decode("utf-8", "replace"))
                finally:
                    await session.close()
                code = await self.eng.wait(cid)
                if code != 0:
                    raise BuildError(f"The command '{' '.join(command)}' returned a non-zero code: {code}", code)
                if stubs:  # before the commit: they must not be part of the layer
                    await asyncio.to_thread(self._remove_stubs, cid, stubs, parents)
                cfg = json.loads(json.dumps(self.cfg))
                img = await asyncio.to_thread(self.store.commit, cid, cfg, None, (), "", "", created)
            finally:
                with contextlib.suppress(errdefs.DockyardError):
                    await self.eng.remove(cid, force=True, volumes=True)
                self.emit(f" ---> Removed intermediate container {cid[:12]}\n")
        return img.id

    # RUN --mount sources. Each registers its own cleanup on ``stack``, which unwinds after the
    # RUN container is gone.

    async def _cache_dir(self, stack, m) -> str:
        """The persistent directory of a cache mount: ``<data-root>/build/cache-mounts/<name>``,
        named by the id (default: the target, as in BuildKit), hashed unless it is a plain name.
        sharing=locked holds an exclusive flock for the whole RUN; shared takes a shared one (so
        it waits for a locked user only); private uses the first instance nobody holds."""
        ident = m.id or m.target
        plain = re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", ident) and not ident.endswith(".lock")
        name = ident if plain else hashlib.sha256(ident.encode()).hexdigest()
        root = os.path.join(os.path.dirname(self.store.root), "build", "cache-mounts")
        for n in itertools.count():
            path = os.path.join(root, name if n == 0 else f"{name}~{n}")  # "~": never in a name
            fd = await asyncio.to_thread(_open_lock, path)
            stack.callback(os.close, fd)
            if m.sharing != "private":
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX if m.sharing == "locked" else fcntl.LOCK_SH)
            else:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # another build has it; try the next instance
            # made under the lock, so ``builder prune`` (which takes it exclusively) can't
            # remove it between here and the RUN
            await asyncio.to_thread(_create_cache_dir, path, m)
            return path

    def _context_source(self, stack, m) -> str:
        """A context path to bind. Read-only: the path itself. rw: a throwaway copy, so writes
        are discarded (BuildKit: "writes ... will be discarded") and the context stays as given."""
        host = safepath.resolve(self.context, posixpath.normpath("/" + (m.source or "")).lstrip("/"))
        if m.readonly:
            return host
        tmp = tempfile.mkdtemp(dir=self.tmp, prefix="bind-")
        stack.callback(shutil.rmtree, tmp, True)
        copy = os.path.join(tmp, "src")
        if os.path.isdir(host):
            shutil.copytree(host, copy, symlinks=True)
        else:
            shutil.copy2(host, copy, follow_symlinks=False)
        return copy

    async def _image_source(self, stack, m, image: str) -> str:
        """A path of a stage's or an image's rootfs to bind: an overlay of the image mounted here
        (its upper dir takes the writes of an rw mount and is thrown away with it)."""
        key = "build-" + secrets.token_hex(16)
        stack.push_async_callback(asyncio.to_thread, self.store.remove_rootfs, key)
        mounts = await asyncio.to_thread(self.store.prepare_rootfs, key, image)
        target = tempfile.mkdtemp(dir=self.tmp, prefix="from-")
        stack.callback(os.rmdir, target)
        await asyncio.to_thread(sysmount.apply_rootfs, mounts, target)
        stack.callback(sysmount.unmount, target)
        source = safepath.resolve(target, posixpath.normpath("/" + (m.source or "")).lstrip("/"))
        if not os.path.lexists(source):
            raise BuildError(f"RUN --mount from={m.from_}: source {m.source or '/'!r} not found in {image[7:19]}")
        return source

    def _script_dir(self, stack, path: str, script: str) -> str:
        tmp = tempfile.mkdtemp(dir=self.tmp, prefix="pipes-")
        stack.callback(shutil.rmtree, tmp, True)
        fd = os.open(os.path.join(tmp, posixpath.basename(path)), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
        with os.fdopen(fd, "w") as f:
            f.write(script)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; a RUN as USER must still read the script
        return tmp

    async def _mount_stubs(self, targets) -> tuple[list[str], dict]:
        """Mount points the runtime will have to create because the image lacks them (the
        mount targets and the engine's /etc files), and the
        metadata (mode, uid, gid) of the existing directories above them. BuildKit removes such
        stubs after the RUN so they do not end up in the layer; so do we (only the ones still
        empty: a RUN that put files beside a mount point keeps them)."""
        key = "build-" + secrets.token_hex(16)

        def look(root):
            stubs = [p for t in targets for p in _missing_paths(root, t)]
            parents = {}
            for path in stubs:
                parts = path.strip("/").split("/")
                for i in range(1, len(parts)):
                    above = "/" + "/".join(parts[:i])
                    if above not in stubs and above not in parents:
                        fd = safepath.open_beneath(root, above, os.O_PATH)
                        st = os.fstat(fd)
                        os.close(fd)
                        parents[above] = (st.st_mode, st.st_uid, st.st_gid)
            return stubs, parents

        try:
            mounts = await asyncio.to_thread(self.store.prepare_rootfs, key, self.image)
            return await asyncio.to_thread(self._with_mount, mounts, look)
        finally:
            await asyncio.to_thread(self.store.remove_rootfs, key)

    def _remove_stubs(self, cid: str, stubs: list[str], parents: dict) -> None:
        """Take the stubs out of the RUN's upper dir, then the directories above them that
        overlayfs copied up only to hold a stub: still empty, not opaque, and with the mode
        and owner the image has, they are the image's own directory (only the mtime differs),
        so dropping them from the upper dir changes nothing but keeps them out of the layer."""
        upper = self.store.rootfs_upper(cid)
        for path in sorted({*stubs, *parents}, key=lambda p: p.count("/"), reverse=True):
            try:
                parent, name = safepath.open_parent(upper, path)
            except OSError:
                continue
            try:
                st = os.lstat(name, dir_fd=parent)
                here = f"/proc/self/fd/{parent}/{name}"
                if path in parents:
                    if (st.st_mode, st.st_uid, st.st_gid) != parents[path] or os.listdir(here) \
                            or _opaque(here):
                        continue
                    os.rmdir(name, dir_fd=parent)
                elif stat.S_ISDIR(st.st_mode):
                    os.rmdir(name, dir_fd=parent)
                elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
                    os.unlink(name, dir_fd=parent)
            except OSError:
                pass  # not there, or not empty: the RUN wrote beside the mount point
            finally:
                os.close(parent)

    # -- COPY / ADD -----------------------------------------------------------------------------

    async def _copy(self, inst, scope) -> None:
        cmd = inst.cmd
        words = inst.expanded(scope)
        if len(words) < 2:
            raise inst.error(f"{cmd} requires at least two arguments")
        srcs, dest = words[:-1], words[-1]
        if len(srcs) > 1 and not dest.endswith("/"):
            raise inst.error(f"When using {cmd} with more than one source file, the destination must be a directory and end with a /")
        flags = {k: inst.expand(v, scope) for k, v in inst.flags.items() if isinstance(v, str)}
        self.raw_dest = dest  # history shows the destination as written
        if not dest.startswith("/"):
            keep = "/" if dest.endswith("/") or dest in (".", "") else ""
            dest = posixpath.normpath(posixpath.join(self.cfg.get("WorkingDir") or "/", dest)).rstrip("/") + keep
        chmod = None
        if flags.get("chmod"):
            if not re.fullmatch(r"[0-7]{3,4}", flags["chmod"]):
                raise inst.error(f"invalid chmod value {flags['chmod']!r}: use octal like 0755")
            chmod = int(flags["chmod"], 8)
        src_image = None
        if flags.get("from"):
            ref = flags["from"]
            index = dockerfile.resolve_stage_ref(self.df, ref)
            src_image = self._stage_result(inst, index) if index is not None else None
            if src_image is None:
                try:
                    src_image = (await asyncio.to_thread(self.store.resolve, ref)).id
                except errdefs.NotFound as e:
                    raise inst.error(f"{cmd} --from={ref}: {e}") from None
        for s in srcs:
            if re.match(r"https?://", s):
                raise inst.error(f"{cmd} from a URL is not supported by this builder: {s}")
        if inst.heredocs:
            # ``COPY <<A <<B /dir/``: each heredoc is a file named after it, written to a temp dir
            # and copied from there like a context file (so its content and mode are in the key)
            bodies = {h.name: h for h in inst.heredocs}
            named = [(s, re.fullmatch(r"\d*<<-?(.+)", s)) for s in srcs]
            here = [m.group(1) for s, m in named if m and m.group(1) in bodies]
            srcs = [s for s, m in named if not (m and m.group(1) in bodies)]
            hdir = tempfile.mkdtemp(dir=self.tmp, prefix="heredoc-")
            try:
                for name in here:
                    h = bodies[name]
                    try:  # variables expand, quotes and escapes stay (BuildKit's heredoc lexing)
                        text = dockerfile._lex(h.content, scope, inst.escape, raw_quotes=True,
                                               raw_escapes=True)[0] if h.expand else h.content
                    except dockerfile.DockerfileError as e:
                        raise inst.error(f"{cmd}: {e.reason}") from None
                    if "/" in name or name in (".", ".."):
                        raise inst.error(f"{cmd}: heredoc name {name!r} can't be a file name")
                    fd = os.open(os.path.join(hdir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    with os.fdopen(fd, "w") as f:
                        f.write(text)
                    os.chmod(os.path.join(hdir, name), 0o644)  # whatever the umask: BuildKit's 0644
                return await self._copy_sources(inst, src_image, srcs, dest, flags, chmod, (hdir, here))
            finally:
                shutil.rmtree(hdir, ignore_errors=True)
        return await self._copy_sources(inst, src_image, srcs, dest, flags, chmod)

    async def _copy_sources(self, inst, src_image, srcs, dest, flags, chmod, heredocs=None) -> None:
        if src_image is None:
            return await self._copy_from(inst, self.context, srcs, dest, flags, chmod, "context", heredocs)
        key = "build-" + secrets.token_hex(16)
        try:
            mounts = await asyncio.to_thread(self.store.prepare_rootfs, key, src_image)
            target = tempfile.mkdtemp(dir=self.tmp, prefix="src-")
            try:
                await asyncio.to_thread(sysmount.apply_rootfs, mounts, target)
                try:
                    await self._copy_from(inst, target, srcs, dest, flags, chmod, src_image, heredocs)
                finally:
                    sysmount.unmount(target)
            finally:
                os.rmdir(target)
        finally:
            await asyncio.to_thread(self.store.remove_rootfs, key)

    def _sources(self, inst, root: str, srcs: list[str], where: str) -> list[str]:
        """Relative paths beneath ``root`` the sources name (globs expanded), resolved in root."""
        out = []
        for s in srcs:
            if where == "context" and posixpath.normpath(s).startswith(".."):
                raise inst.error(f"{inst.cmd} failed: forbidden path outside the build context: {s}")
            norm = posixpath.normpath("/" + s).lstrip("/")
            if re.search(r"[*?\[]", norm):
                rx = re.compile("".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
                                        for c in norm) + r"\Z")
                matches = []
                for dirpath, dirnames, filenames in os.walk(root):
                    rel = os.path.relpath(dirpath, root)
                    for n in dirnames + filenames:
                        r = n if rel == "." else f"{rel}/{n}"
                        if rx.match(r):
                            matches.append(r)
                if not matches:
                    raise inst.error(f"{inst.cmd} failed: no source files were specified matching {s}")
                out += sorted(matches)
                continue
            host = safepath.resolve(root, norm)
            if not os.path.lexists(host):
                what = "build context or excluded by .dockerignore" if where == "context" else "image"
                raise inst.error(f"{inst.cmd} failed: file not found in {what}: stat {norm or '.'}: file does not exist")
            out.append(os.path.relpath(host, os.path.realpath(root)))
        return out

    async def _copy_from(self, inst, root, srcs, dest, flags, chmod, where, heredocs=None) -> None:
        sources = await asyncio.to_thread(self._sources, inst, root, srcs, where)
        # (base dir, relative path, may ADD unpack it): the sources, then the heredoc files
        entries = [(os.path.realpath(root), r, inst.cmd == "ADD") for r in sources]
        if heredocs:
            entries += [(heredocs[0], name, False) for name in heredocs[1]]
        digests = await asyncio.to_thread(lambda: [hash_tree(b, r) for b, r, _ in entries])
        kinds = ["dir" if os.path.isdir(os.path.join(b, r)) else "file" for b, r, _ in entries]
        sources = entries
        if len(sources) == 1:
            label = f"{kinds[0]}:{digests[0]}"
        else:
            label = "multi:" + step_key("", " ".join(digests))
        opts = "".join(f"--{k}={flags[k]} " for k in ("from", "chown", "chmod") if flags.get(k))
        created = _nop(f"{inst.cmd} {opts}{label} in {self.raw_dest} ", True)

        def write(target):
            uid = gid = 0
            if flags.get("chown"):
                user, _, group = flags["chown"].partition(":")
                uid = _lookup_id(target, "/etc/passwd", user)
                gid = _lookup_id(target, "/etc/group", group) if group else uid if user.isdigit() else \
                    self._primary_gid(target, user)
            for base, rel, add in sources:
                self._place(base, rel, target, dest, uid, gid, chmod, add, len(sources) > 1)

        await self._cached(created, lambda: self._commit(created, write), sources=json.dumps(digests))

    @staticmethod
    def _primary_gid(root: str, user: str) -> int:
        try:
            fd = safepath.open_beneath(root, "/etc/passwd")
            with os.fdopen(fd) as f:
                for line in f:
                    fields = line.strip().split(":")
                    if len(fields) > 3 and fields[0] == user:
                        return int(fields[3])
        except (OSError, ValueError):
            pass
        return 0

    def _place(self, src_root, rel, root, dest, uid, gid, chmod, add, multi) -> None:
        """Copy context entry ``rel`` to ``dest`` inside the mounted rootfs ``root``."""
        src = os.path.join(src_root, rel)
        st = os.lstat(src)
        if stat.S_ISDIR(st.st_mode):
            self._copy_tree(src, root, dest.rstrip("/") or "/", uid, gid, chmod)
            return
        if add and stat.S_ISREG(st.st_mode) and _is_archive(src):
            fd = safepath.mkdir_all(root, dest)
            try:
                with open(src, "rb") as f:
                    # extraction is confined to the destination (archive resolves every member
                    # name with safepath), so an escaping member is refused, never written outside
                    archive.apply_layer(f, f"/proc/self/fd/{fd}", overlay=False)
            finally:
                os.close(fd)
            return
        target = dest
        if dest.endswith("/") or multi:
            target = posixpath.join(dest, posixpath.basename(rel))
        else:
            try:
                fd = safepath.open_beneath(root, dest, os.O_PATH | os.O_DIRECTORY)
                os.close(fd)
                target = posixpath.join(dest, posixpath.basename(rel))
            except OSError:
                pass
        self._copy_entry(src, st, root, target, uid, gid, chmod)

    def _copy_tree(self, src, root, dest, uid, gid, chmod) -> None:
        os.close(safepath.mkdir_all(root, dest))
        self._set_meta(root, dest, os.lstat(src), uid, gid, chmod)
        for entry in sorted(os.listdir(src)):
            path = os.path.join(src, entry)
            st = os.lstat(path)
            target = posixpath.join(dest, entry)
            if stat.S_ISDIR(st.st_mode):
                self._copy_tree(path, root, target, uid, gid, chmod)
            else:
                self._copy_entry(path, st, root, target, uid, gid, chmod)

    def _copy_entry(self, src, st, root, target, uid, gid, chmod) -> None:
        parent_fd, name = safepath.open_parent(root, target, create=True)
        try:
            with contextlib.suppress(FileNotFoundError):
                existing = os.lstat(name, dir_fd=parent_fd)
                if stat.S_ISDIR(existing.st_mode):
                    shutil.rmtree(f"/proc/self/fd/{parent_fd}/{name}")
                else:
                    os.unlink(name, dir_fd=parent_fd)
            if stat.S_ISLNK(st.st_mode):
                # a symlink is copied as a symlink: its target is never read here
                os.symlink(os.readlink(src), name, dir_fd=parent_fd)
                os.chown(name, uid, gid, dir_fd=parent_fd, follow_symlinks=False)
                return
            if not stat.S_ISREG(st.st_mode):
                return  # devices, fifos, sockets: Docker skips them in a context too
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                          0o600, dir_fd=parent_fd)
            try:
                with open(src, "rb") as f:
                    while block := f.read(1 << 20):
                        archive_write(out, block)
                os.fchown(out, uid, gid)
                os.fchmod(out, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
                os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(out)
        finally:
            os.close(parent_fd)

    @staticmethod
    def _set_meta(root, path, st, uid, gid, chmod) -> None:
        fd = safepath.open_beneath(root, path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
        finally:
            os.close(fd)


def archive_write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
