"""Helpers shared by the command modules: the client from the click context, errors, prompts.

Every command imports it: it imports nothing beyond click and the client.
"""

import json
import sys

import click

from dockyard.cli.client import APIError, Client
from dockyard.cli.errors import CLIError  # noqa: F401 - every command imports it from here


def client() -> Client:
    ctx = click.get_current_context()
    root = ctx.find_root()
    if root.obj is None or "client" not in root.obj:
        try:
            root.obj = {"client": Client(root.params.get("host") or "unix:///run/dockyard.sock")}
        except ValueError as e:  # a malformed -H
            raise CLIError(str(e)) from e
    return root.obj["client"]


def err(msg: str):
    print(msg, file=sys.stderr)


def for_each(names, fn, quiet_not_found=False):
    """Run fn(name) for every name; print daemon errors one line each and exit 1 if any failed
    (docker's multi-object commands keep going after an error)."""
    failed = False
    for name in names:
        try:
            fn(name)
        except APIError as e:
            if quiet_not_found and e.status == 404:
                continue
            err(f"Error response from daemon: {e.message}")
            failed = True
    if failed:
        raise SystemExit(1)


def confirm(warning: str, force: bool) -> bool:
    """docker's prune prompt: the warning, then '[y/N]'; non-interactive stdin means no."""
    if force:
        return True
    sys.stderr.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def split_ref(ref: str) -> tuple[str, str]:
    """'repo[:tag]' -> (repo, tag); a ':' before the last '/' is a registry port, not a tag."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, ""


def print_objects(objs, fmt):
    """inspect output: a JSON list indented like docker, or the template once per object."""
    from dockyard.cli.format import Template

    if fmt:
        tmpl = Template(fmt.replace("\\t", "\t").replace("\\n", "\n"))
        sys.stdout.write("".join(tmpl.render(o) + "\n" for o in objs))
    else:
        sys.stdout.write(json.dumps(objs, indent=4, ensure_ascii=False) + "\n")
    sys.stdout.flush()
