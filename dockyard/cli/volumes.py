"""Volume commands: volume create, ls, rm, prune (inspect is the shared one in system.py)."""

import sys

import click

from dockyard.cli import opts as optparse
from dockyard.cli.client import filters_param, quote
from dockyard.cli.common import CLIError, client, confirm, for_each
from dockyard.cli.format import human_size, render_rows
from dockyard.cli.system import inspect_command


@click.group()
def volume():
    """Manage volumes."""


@volume.command()
@click.argument("name", required=False)
@click.option("--name", "name_opt", help="Volume name")
@click.option("-d", "--driver", default="local", help="Volume driver")
@click.option("-o", "--opt", multiple=True, help="Driver options (K=V)")
@click.option("--label", multiple=True, help="Set a label (K=V)")
def create(name, name_opt, driver, opt, label):
    """Create a volume; prints its name."""
    if name and name_opt and name != name_opt:
        raise CLIError("conflicting options: cannot specify a volume-name through both "
                       "--name and as a positional arg")
    try:
        body = {"Driver": driver, "DriverOpts": optparse.parse_kv(opt, "option"),
                "Labels": optparse.parse_kv(label), "Name": name or name_opt or ""}
    except ValueError as e:
        raise CLIError(str(e)) from e
    print(client().post("/volumes/create", body=body)["Name"])


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display volume names")
@click.option("-f", "--filter", "filters", multiple=True, help="dangling=, driver=, label=, name=")
@click.option("--format", "fmt", help="Go template, 'table ...' or 'json'")
def ls(quiet, filters, fmt):
    """List volumes."""
    try:
        f = filters_param(filters)
    except ValueError as e:
        raise CLIError(str(e)) from e
    vols = (client().get("/volumes", {"filters": f}) or {}).get("Volumes") or []
    vols.sort(key=lambda v: v["Name"])
    if quiet:
        fmt = "{{.Name}}"
    rows = [{"Driver": v.get("Driver", ""), "Name": v["Name"], "Mountpoint": v.get("Mountpoint", ""),
             "Scope": v.get("Scope", "local"),
             "Labels": ",".join(f"{k}={val}" for k, val in sorted((v.get("Labels") or {}).items())),
             "Size": human_size(v["UsageData"]["Size"]) if v.get("UsageData") else "N/A"}
            for v in vols]
    sys.stdout.write(render_rows(fmt or "table {{.Driver}}\t{{.Name}}", rows,
                                 {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT",
                                  "Scope": "SCOPE", "Labels": "LABELS", "Size": "SIZE"}))


@volume.command()
@click.option("-f", "--force", is_flag=True, help="Force the removal")
@click.argument("names", nargs=-1, required=True)
def rm(force, names):
    """Remove one or more volumes."""
    c = client()
    for_each(names, lambda n: (c.delete(f"/volumes/{quote(n)}", {"force": 1 if force else None}), print(n)))


@volume.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused volumes, not just anonymous")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help="Filters (label=)")
def prune(all_, force, filters):
    """Remove unused local volumes."""
    which = "all local volumes" if all_ else "anonymous local volumes"
    if not confirm(f"WARNING! This will remove {which} not used by at least one container.", force):
        return
    f = filters_param(list(filters) + (["all=true"] if all_ else []))
    res = client().post("/volumes/prune", {"filters": f}) or {}
    deleted = res.get("VolumesDeleted") or []
    if deleted:
        print("Deleted Volumes:")
        print("".join(d + "\n" for d in deleted))
    print(f"Total reclaimed space: {human_size(res.get('SpaceReclaimed', 0))}")


volume.add_command(ls, "list")
volume.add_command(rm, "remove")
volume.add_command(inspect_command("volume"), "inspect")
