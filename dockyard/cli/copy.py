"""``dockyard cp``: docker cp's copy rules over the archive endpoints.

Out of a container: ``GET archive`` gives a tar named by the source's base name and the source's
PathStat; the local side decides where it lands (into an existing directory, or renamed to the
destination). Into a container: ``HEAD archive`` stats the destination; an existing directory gets
the tar as is, anything else gets it in the parent with the top entry renamed, as docker does.
A trailing ``/.`` on a directory source means its contents; ``-`` is a tar on stdin/stdout.
"""

import base64
import json
import os
import posixpath
import sys
import tarfile
import tempfile

import click

from dockyard.cli.client import APIError, quote
from dockyard.cli.common import CLIError, client

_GO_DIR = 1 << 31


def split_container_path(arg: str):
    """'name:/path' -> ('name', '/path'); a local path (with '/' before any ':') -> (None, path)."""
    if arg.startswith((".", "/")) or ":" not in arg:
        return None, arg
    name, _, path = arg.partition(":")
    return (name, path) if name else (None, arg)


def _stat(c, container, path):
    resp = c.open("HEAD", f"/containers/{quote(container)}/archive", {"path": path})
    resp.read()
    return json.loads(base64.b64decode(resp.getheader("X-Docker-Container-Path-Stat", "")) or "{}")


def _renamed(members, old_top: str, new_top: str):
    for m in members:
        if m.name == old_top or m.name.startswith(old_top + "/"):
            m.name = new_top + m.name[len(old_top):]
        yield m


def copy_from(c, container, src, dst, follow):
    if follow:
        st = _stat(c, container, src)
        if st.get("linkTarget"):
            src = st["linkTarget"]
    resp = c.open("GET", f"/containers/{quote(container)}/archive", {"path": src}, own_conn=True)
    st = json.loads(base64.b64decode(resp.getheader("X-Docker-Container-Path-Stat", "")) or "{}")
    if dst == "-":
        while data := resp.read1():
            sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    with tempfile.TemporaryFile() as spool:
        while data := resp.read1():
            spool.write(data)
        spool.seek(0)
        src_is_dir = bool(st.get("mode", 0) & _GO_DIR)
        top = "." if src.endswith("/.") else posixpath.basename(src.rstrip("/")) or "."
        if os.path.isdir(dst):
            # Into an existing directory: keep the name (or spill the contents for '/.').
            parent, new_top = dst, top
        else:
            if dst.endswith("/"):
                raise CLIError(f"destination directory {dst!r} does not exist" if src_is_dir
                               else f'destination "{dst}" must be a directory')
            if not os.path.isdir(os.path.dirname(os.path.abspath(dst))):
                raise CLIError(f'destination "{dst}" does not exist: no such directory')
            parent, new_top = os.path.dirname(os.path.abspath(dst)), os.path.basename(dst)
            if new_top != top and top == ".":
                os.makedirs(dst, exist_ok=True)
                parent, new_top = dst, "."
        with tarfile.open(fileobj=spool, mode="r|") as tf:
            # The 'tar' filter refuses absolute names and '..' so a hostile tar stays in parent.
            tf.extractall(parent, _renamed(tf, top, new_top), filter="tar")


def copy_to(c, src, container, dst, copy_uidgid):
    params = {"noOverwriteDirNonDir": "true", "copyUIDGID": "true" if copy_uidgid else None}
    if src == "-":
        c.open("PUT", f"/containers/{quote(container)}/archive", dict(params, path=dst),
               body=sys.stdin.buffer).read()
        return
    if not os.path.lexists(src):
        raise CLIError(f"lstat {src}: no such file or directory")
    src_is_dir = os.path.isdir(src)
    top = "." if src.endswith("/.") else os.path.basename(os.path.normpath(src))
    try:
        dst_st = _stat(c, container, dst)
    except APIError as e:
        if e.status != 404:
            raise
        dst_st = None
    if dst_st and dst_st.get("mode", 0) & _GO_DIR:
        target, name = dst, top
    else:
        if dst_st is None and dst.endswith("/") and not src_is_dir:
            raise CLIError(f'destination "{container}:{dst}" must be a directory')
        if dst_st is not None and src_is_dir:
            raise CLIError("cannot copy directory to file")
        target, name = posixpath.dirname(dst.rstrip("/")) or "/", posixpath.basename(dst.rstrip("/"))
    buf = tempfile.TemporaryFile()
    with buf:
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            if top == ".":
                for entry in sorted(os.listdir(src)):
                    tf.add(os.path.join(src, entry), arcname=posixpath.join(name, entry) if name != "." else entry)
            else:
                tf.add(src, arcname=name)
        buf.seek(0)
        c.open("PUT", f"/containers/{quote(container)}/archive", dict(params, path=target), body=buf).read()


@click.command(context_settings={"help_option_names": ["--help"]})
@click.option("-a", "--archive", is_flag=True, help="Archive mode (copy all uid/gid information)")
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output (no progress is printed)")
@click.argument("src")
@click.argument("dst")
def cp(archive, follow_link, quiet, src, dst):
    """Copy files/folders between a container and the local filesystem.

    SRC and DST are CONTAINER:PATH or a local path; '-' is a tar stream on stdin/stdout.
    """
    s_ctr, s_path = split_container_path(src)
    d_ctr, d_path = split_container_path(dst)
    if s_ctr and d_ctr:
        raise CLIError("copying between containers is not supported")
    if not (s_ctr or d_ctr):
        raise CLIError("must specify at least one container source")
    c = client()
    try:
        if s_ctr:
            copy_from(c, s_ctr, s_path, d_path, follow_link)
        else:
            copy_to(c, s_path, d_ctr, d_path, archive)
    except APIError as e:
        raise CLIError(f"Error response from daemon: {e.message}") from None
    except (OSError, tarfile.TarError) as e:
        raise CLIError(str(e)) from None


COMMANDS = [cp]
