"""``dockyard build``: send a context tar to ``POST /build`` and print the stream like docker does.

The context is a directory (tarred here, honouring its .dockerignore, as the docker CLI does; the
Dockerfile and .dockerignore are always sent) or ``-`` (a tar, or a lone Dockerfile, on stdin).
Each step's line ``---> <id>`` also shows how long the step took.
"""

import io
import json
import os
import sys
import tarfile
import time

import click

from dockyard.build import dockerignore
from dockyard.cli.common import CLIError, client


def _kv(pairs, what):
    out = {}
    for p in pairs:
        k, eq, v = p.partition("=")
        if not k:
            raise CLIError(f"invalid {what} {p!r}: want KEY=VALUE")
        # --build-arg K (no '=') takes K from the environment, as docker does
        out[k] = v if eq else os.environ.get(k)
    return out


def tar_context(path: str, dockerfile: str | None, stdin_dockerfile: bytes | None) -> bytes:
    """The context directory as an uncompressed tar, without what .dockerignore excludes."""
    if not os.path.isdir(path):
        raise CLIError(f'unable to prepare context: path "{path}" not found')
    try:
        with open(os.path.join(path, ".dockerignore")) as f:
            patterns = f.read().splitlines()
    except FileNotFoundError:
        patterns = []
    ignored = dockerignore.matcher(patterns)
    keep = {".dockerignore", (dockerfile or "Dockerfile").lstrip("./")}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(path):
            rel_dir = os.path.relpath(dirpath, path)
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                if ignored(rel) and rel not in keep:
                    if name in dirnames:
                        dirnames.remove(name)  # the walk would not find exceptions below anyway
                    continue
                info = tf.gettarinfo(os.path.join(path, rel), rel)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(os.path.join(path, rel), "rb") as f:
                        tf.addfile(info, f)
                elif info.isdir() or info.issym() or info.islnk():
                    tf.addfile(info)
        if stdin_dockerfile is not None:
            info = tarfile.TarInfo(".dockerfile.stdin")
            info.size, info.mode, info.mtime = len(stdin_dockerfile), 0o644, int(time.time())
            tf.addfile(info, io.BytesIO(stdin_dockerfile))
    return buf.getvalue()


@click.command("build")
@click.option("-t", "--tag", "tags", multiple=True, help="Name and optionally a tag (name:tag)")
@click.option("-f", "--file", "dockerfile", help="Name of the Dockerfile (default PATH/Dockerfile; - for stdin)")
@click.option("--build-arg", "build_args", multiple=True, help="Set build-time variables")
@click.option("--target", help="Set the target build stage to build")
@click.option("--no-cache", is_flag=True, help="Do not use cache when building the image")
@click.option("--label", "labels", multiple=True, help="Set metadata for an image")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the build output and print image ID on success")
@click.option("--iidfile", help="Write the image ID to the file")
@click.option("--network", default="", help="Networking mode for the RUN instructions (none, host, default)")
@click.argument("path")
def build(tags, dockerfile, build_args, target, no_cache, labels, quiet, iidfile, network, path):
    """Build an image from a Dockerfile."""
    params = {"t": list(tags), "q": 1 if quiet else None, "nocache": 1 if no_cache else None,
              "target": target, "networkmode": network or None,
              "buildargs": json.dumps(_kv(build_args, "--build-arg")) if build_args else None,
              "labels": json.dumps(_kv(labels, "--label")) if labels else None}
    if path == "-":
        if dockerfile == "-":
            raise CLIError("invalid argument: can't use stdin for both build context and dockerfile")
        body = sys.stdin.buffer.read()
        if not body:
            raise CLIError("requested build from stdin, but stdin is empty")
        try:  # a tar is the context; anything else is a lone Dockerfile
            tarfile.open(fileobj=io.BytesIO(body)).close()
            params["dockerfile"] = dockerfile or "Dockerfile"
        except tarfile.TarError:
            body = tar_context_of_dockerfile(body)
    else:
        stdin_df = sys.stdin.buffer.read() if dockerfile == "-" else None
        name = dockerfile
        if dockerfile and dockerfile != "-":
            # -f is relative to the current directory; it must lie inside the context
            full = os.path.abspath(dockerfile)
            rel = os.path.relpath(full, os.path.abspath(path))
            if rel.startswith(".."):
                raise CLIError(f"the Dockerfile ({dockerfile}) must be within the build context ({path})")
            name = rel
        body = tar_context(path, None if dockerfile == "-" else name, stdin_df)
        params["dockerfile"] = ".dockerfile.stdin" if dockerfile == "-" else (name or "Dockerfile")
    if not quiet:
        print(f"Sending build context to Docker daemon  {len(body) / 1000:.3f}kB\n")
    image_id, started = None, None
    out = []
    for msg in client().stream_json("POST", "/build", params, body, {"Content-Type": "application/x-tar"}):
        if "errorDetail" in msg or "error" in msg:
            sys.stdout.flush()
            raise CLIError((msg.get("errorDetail") or {}).get("message") or msg.get("error"),
                           (msg.get("errorDetail") or {}).get("code") or 1)
        if "aux" in msg:
            image_id = (msg["aux"] or {}).get("ID") or image_id
            continue
        text = msg.get("stream", "")
        if quiet:
            out.append(text)
            continue
        if text.startswith("Step "):
            started = time.monotonic()
        elif text.startswith(" ---> ") and len(text.strip()) == 17 and started is not None:
            text = text.rstrip("\n") + f"  ({time.monotonic() - started:.2f}s)\n"
        sys.stdout.write(text)
        sys.stdout.flush()
    if quiet:
        text = "".join(out)
        image_id = image_id or text.strip()
        sys.stdout.write(text)
    if iidfile and image_id:
        with open(iidfile, "w") as f:
            f.write(image_id)
    return 0


def tar_context_of_dockerfile(data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@click.group("builder")
def builder():
    """Manage builds."""


@builder.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused build cache")
def builder_prune(force, all_):
    """Remove build cache."""
    from dockyard.cli.common import confirm
    from dockyard.cli.format import human_size

    if not confirm("WARNING! This will remove all dangling build cache.", force):
        return
    res = client().post("/build/prune", {"all": 1 if all_ else None}) or {}
    print(f"Total reclaimed space: {human_size(res.get('SpaceReclaimed', 0))}")


COMMANDS = [build, builder]
