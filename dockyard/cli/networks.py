"""Network commands (network create/ls/rm/prune/connect/disconnect; inspect is the shared one in
system.py) and ``port``, which reads a container's published ports from inspect."""

import sys

import click

from dockyard.cli import opts as optparse
from dockyard.cli.client import filters_param, quote
from dockyard.cli.common import CLIError, client, confirm, for_each
from dockyard.cli.format import render_rows
from dockyard.cli.system import inspect_command


@click.group()
def network():
    """Manage networks."""


@network.command()
@click.argument("name")
@click.option("-d", "--driver", default="bridge", help="Driver (bridge)")
@click.option("--subnet", help="Subnet in CIDR form")
@click.option("--gateway", help="Gateway address of the subnet")
@click.option("--ip-range", help="Allocate container addresses from this sub-range")
@click.option("--internal", is_flag=True, help="No route out of the network")
@click.option("--label", multiple=True, help="Set a label (K=V)")
@click.option("-o", "--opt", multiple=True, help="Driver options (K=V)")
def create(name, driver, subnet, gateway, ip_range, internal, label, opt):
    """Create a network; prints its ID."""
    if (gateway or ip_range) and not subnet:
        raise CLIError("--gateway and --ip-range need --subnet")
    try:
        body = {"Name": name, "Driver": driver, "Internal": internal,
                "IPAM": {"Driver": "default", "Options": {},
                         "Config": [{k: v for k, v in (("Subnet", subnet), ("Gateway", gateway),
                                                         ("IPRange", ip_range)) if v}] if subnet else []},
                "Options": optparse.parse_kv(opt, "option"), "Labels": optparse.parse_kv(label)}
    except ValueError as e:
        raise CLIError(str(e)) from e
    print(client().post("/networks/create", body=body)["Id"])


@network.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display network IDs")
@click.option("-f", "--filter", "filters", multiple=True, help="driver=, id=, label=, name=, type=, dangling=")
@click.option("--format", "fmt", help="Go template, 'table ...' or 'json'")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the IDs")
def ls(quiet, filters, fmt, no_trunc):
    """List networks."""
    try:
        f = filters_param(filters)
    except ValueError as e:
        raise CLIError(str(e)) from e
    nets = client().get("/networks", {"filters": f}) or []
    nets.sort(key=lambda n: n["Name"])
    if quiet:
        fmt = "{{.ID}}"
    rows = [{"ID": n["Id"] if no_trunc else n["Id"][:12], "Name": n["Name"], "Driver": n["Driver"],
             "Scope": n.get("Scope", "local"), "Internal": str(bool(n.get("Internal"))).lower(),
             "Labels": ",".join(f"{k}={v}" for k, v in sorted((n.get("Labels") or {}).items())),
             "CreatedAt": n.get("Created", "")} for n in nets]
    sys.stdout.write(render_rows(fmt or "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}", rows,
                                 {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
                                  "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED"}))


@network.command()
@click.option("-f", "--force", is_flag=True, help="Do not fail when the network does not exist")
@click.argument("names", nargs=-1, required=True)
def rm(force, names):
    """Remove one or more networks."""
    c = client()
    for_each(names, lambda n: (c.delete(f"/networks/{quote(n)}"), print(n)), quiet_not_found=force)


@network.command()
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help="Filters (label=, label!=)")
def prune(force, filters):
    """Remove all unused user-defined networks."""
    if not confirm("WARNING! This will remove all custom networks not used by at least one container.", force):
        return
    res = client().post("/networks/prune", {"filters": filters_param(filters)}) or {}
    deleted = res.get("NetworksDeleted") or []
    if deleted:
        print("Deleted Networks:")
        print("".join(d + "\n" for d in deleted), end="")


@network.command()
@click.option("--alias", multiple=True, help="Network-scoped alias for the container")
@click.option("--ip", help="IPv4 address")
@click.argument("net")
@click.argument("container")
def connect(alias, ip, net, container):
    """Connect a container to a network (live if it runs)."""
    ep = {"Aliases": list(alias) or None, "IPAMConfig": {"IPv4Address": ip} if ip else None}
    client().post(f"/networks/{quote(net)}/connect", body={"Container": container, "EndpointConfig": ep})


@network.command()
@click.option("-f", "--force", is_flag=True, help="Force the disconnection")
@click.argument("net")
@click.argument("container")
def disconnect(force, net, container):
    """Disconnect a container from a network."""
    client().post(f"/networks/{quote(net)}/disconnect", body={"Container": container, "Force": force})


network.add_command(ls, "list")
network.add_command(rm, "remove")
network.add_command(inspect_command("network"), "inspect")


@click.command()
@click.argument("container")
@click.argument("private_port", required=False)
def port(container, private_port):
    """List a container's port mappings, or the host side of one (PORT[/PROTO])."""
    info = client().get(f"/containers/{quote(container)}/json")
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    if private_port:
        key = private_port if "/" in private_port else private_port + "/tcp"
        binds = ports.get(key)
        if not binds:
            raise CLIError(f"Error: No public port '{key}' published for {container}")
        for b in binds:
            print(f"{b.get('HostIp') or '0.0.0.0'}:{b['HostPort']}")
        return
    def order(k):
        p, _, proto = k.partition("/")
        return (int(p) if p.isdigit() else 0, proto)
    for key in sorted(ports, key=order):
        for b in ports[key] or []:
            print(f"{key} -> {b.get('HostIp') or '0.0.0.0'}:{b['HostPort']}")


COMMANDS = [port]
