"""System commands: version, info, inspect (any object), daemon, events."""

import json
import sys
import time

import click

from dockyard.cli.client import API_PREFIX, APIError, DaemonUnavailable, filters_param, quote
from dockyard.cli.common import CLIError, client, confirm, err, print_objects

CLIENT_VERSION = "0.1.0"


@click.command()
@click.option("-f", "--format", "fmt", help="Go template over {Client, Server}")
def version(fmt):
    """Show the client and server versions."""
    import platform  # 1 ms: not on other commands' path

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    cl = {"Version": CLIENT_VERSION, "ApiVersion": API_PREFIX[2:],
          "GoVersion": "python" + platform.python_version(), "Os": "linux", "Arch": arch}
    server, problem = None, None
    try:
        server = client().get("/version")
    except (APIError, DaemonUnavailable) as e:
        problem = e
    if fmt:
        print_objects([{"Client": cl, "Server": server}], fmt)
    else:
        print("Client:")
        print(f" Version:           {cl['Version']}")
        print(f" API version:       {cl['ApiVersion']}")
        print(f" Python version:    {cl['GoVersion'][6:]}")
        print(f" OS/Arch:           {cl['Os']}/{cl['Arch']}")
        if server:
            name = (server.get("Platform") or {}).get("Name", "")
            print(f"\nServer: {name}".rstrip())
            print(" Engine:")
            print(f"  Version:          {server.get('Version', '')}")
            print(f"  API version:      {server.get('ApiVersion', '')} "
                  f"(minimum version {server.get('MinAPIVersion', '')})")
            print(f"  Runtime:          {server.get('GoVersion', '')}")
            print(f"  OS/Arch:          {server.get('Os', '')}/{server.get('Arch', '')}")
            print(f"  Kernel version:   {server.get('KernelVersion', '')}")
    if problem:
        sys.stdout.flush()
        raise problem


@click.command()
@click.option("-f", "--format", "fmt", help="Go template over the /info object")
def info(fmt):
    """Show system-wide information."""
    i = client().get("/info")
    if fmt:
        print_objects([i], fmt)
        return
    lines = [
        "Server:",
        f" Containers: {i.get('Containers', 0)}",
        f"  Running: {i.get('ContainersRunning', 0)}",
        f"  Paused: {i.get('ContainersPaused', 0)}",
        f"  Stopped: {i.get('ContainersStopped', 0)}",
        f" Images: {i.get('Images', 0)}",
        f" Server Version: {i.get('ServerVersion', '')}",
        f" Storage Driver: {i.get('Driver', '')}",
        f" Logging Driver: {i.get('LoggingDriver', '')}",
        f" Cgroup Driver: {i.get('CgroupDriver', '')}",
        f" Cgroup Version: {i.get('CgroupVersion', '')}",
        f" Default Runtime: {i.get('DefaultRuntime', '')}",
        f" Kernel Version: {i.get('KernelVersion', '')}",
        f" Operating System: {i.get('OperatingSystem', '')}",
        f" OSType: {i.get('OSType', '')}",
        f" Architecture: {i.get('Architecture', '')}",
        f" CPUs: {i.get('NCPU', 0)}",
        f" Total Memory: {_binary_size(i.get('MemTotal', 0))}",
        f" Name: {i.get('Name', '')}",
        f" ID: {i.get('ID', '')}",
        f" Docker Root Dir: {i.get('DockerRootDir', '')}",
    ]
    print("\n".join(lines))
    for w in i.get("Warnings") or ():
        err(w)


def _binary_size(n: float) -> str:
    """units.BytesSize: binary units with 4 significant digits ('7.637GiB')."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.4g}{units[i]}"


_KINDS = {"container": "/containers/{}/json", "image": "/images/{}/json", "volume": "/volumes/{}",
          "network": "/networks/{}"}


def _typed_volume(raw: str) -> str:
    """``docker volume inspect`` decodes into Go's Volume struct and marshals that: keys in field
    (alphabetical) order, empty optional fields dropped, <>& escaped."""
    from dockyard.cli.format import go_json  # the template engine: off version's path

    v = json.loads(raw)
    for k in ("Status", "UsageData", "ClusterVolume"):
        if not v.get(k):
            v.pop(k, None)
    return go_json(v)


def inspect_objects(names, kind, fmt, size=False):
    """GET each name as the given kind (or container, image, volume in turn); print them as
    docker does: the raw JSON re-indented, or the template over each object."""
    from dockyard.cli.format import check_format, indent_raw

    check_format(fmt)
    c = client()
    found, missing = [], []
    for name in names:
        for k in [kind] if kind else list(_KINDS):
            try:
                resp = c.open("GET", _KINDS[k].format(quote(name)),
                              {"size": 1} if size and k == "container" else None)
                raw = resp.read().decode("utf-8", "replace")
                found.append(_typed_volume(raw) if kind == "volume" else raw)
                break
            except APIError as e:
                if e.status != 404:
                    raise
        else:
            missing.append(f"No such {kind}: {name}" if kind else f"No such object: {name}")
    if fmt:
        print_objects([json.loads(r) for r in found], fmt)
    else:
        print(indent_raw(found))
    for m in missing:
        err(f"Error: {m}")
    if missing:
        raise SystemExit(1)


def inspect_command(kind):
    @click.command("inspect")
    @click.option("-f", "--format", "fmt", help="Go template, e.g. '{{.State.Status}}', '{{json .Config}}'")
    @click.option("-s", "--size", is_flag=True, help="Display total file sizes (containers)")
    @click.argument("names", nargs=-1, required=True)
    def cmd(fmt, size, names):
        inspect_objects(names, kind, fmt, size)

    cmd.help = f"Display detailed information on one or more {kind}s." + TEMPLATE_HELP
    return cmd


TEMPLATE_HELP = """

\b
-f takes a Go-template subset: field paths ({{.State.Status}}, {{.Name}}),
{{json .X}}, {{index .X "key"}}, pipes (|), {{range}}/{{if}}/{{with}}...{{end}},
and the functions join, split, upper, lower, title, len, truncate, pad, println."""


@click.command("inspect")
@click.option("-f", "--format", "fmt", help="Go template, e.g. '{{.State.Status}}', '{{json .Config}}'")
@click.option("--type", "kind", type=click.Choice(sorted(_KINDS)), help="Only look for this kind of object")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes (containers)")
@click.argument("names", nargs=-1, required=True)
def inspect(fmt, kind, size, names):
    """Display detailed information on containers, images or volumes."""
    inspect_objects(names, kind, fmt, size)


inspect.help += TEMPLATE_HELP


@click.command()
@click.option("--data-root", default="/var/lib/dockyard", show_default=True, help="Persistent state")
@click.option("--exec-root", default="/run/dockyard", show_default=True,
              help="Runtime state; two daemons side by side need distinct --exec-root values")
@click.option("--host", "listen", default=None, help="Where to listen (default: the -H address)")
@click.option("--insecure-registry", "insecure", multiple=True, metavar="HOST[:PORT]",
              help="Registry reached over plain HTTP (loopback registries always are); repeatable")
@click.option("--bip", help="Address/prefix of the default bridge network (e.g. 10.99.0.1/24)")
@click.option("--default-address-pool", "pools", multiple=True, metavar="base=CIDR,size=N",
              help="Where user networks' subnets are picked from; repeatable")
def daemon(data_root, exec_root, listen, insecure, bip, pools):
    """Run the dockyard daemon (the Docker Engine API server) in the foreground."""
    try:
        from dockyard.api.daemon import run as run_daemon
    except ImportError as e:
        raise CLIError(f"the daemon is not available in this build: {e}") from e
    host = listen or click.get_current_context().find_root().params.get("host")
    raise SystemExit(run_daemon(data_root, exec_root, host or "unix:///run/dockyard.sock",
                                insecure_registries=insecure, bip=bip, address_pools=pools))


def event_line(ev: dict) -> str:
    """docker's prettyPrintEvent: local time (RFC3339 with 9 fraction digits), type, action, actor,
    then the attributes sorted by key."""
    ns = int(ev.get("timeNano") or int(ev.get("time") or 0) * 1_000_000_000)
    t = time.localtime(ns // 1_000_000_000)
    off = t.tm_gmtoff
    zone = "Z" if off == 0 else f"{'+' if off > 0 else '-'}{abs(off) // 3600:02d}:{abs(off) % 3600 // 60:02d}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ns % 1_000_000_000:09d}{zone}"
    actor = ev.get("Actor") or {}
    line = f"{stamp} {ev.get('Type')} {ev.get('Action')} {actor.get('ID', '')}"
    attrs = actor.get("Attributes") or {}
    if attrs:
        line += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return line


@click.command()
@click.option("--since", help="Show events since a timestamp or duration (e.g. 10m)")
@click.option("--until", help="Stream events until this timestamp or duration")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter (type=, event=, container=, image=, label=)")
@click.option("--format", "fmt", help="Go template over each event, or 'json'")
def events(since, until, filters, fmt):
    """Get real time events from the server."""
    from dockyard.cli.containers import api_timestamp  # shared with logs --since
    from dockyard.cli.format import Template, check_format, prepare_format

    check_format(fmt)
    try:
        params = {"filters": filters_param(filters)}
    except ValueError as e:
        raise CLIError(str(e)) from e
    if since:
        params["since"] = api_timestamp(since)
    if until:
        params["until"] = api_timestamp(until)
    tmpl = None
    if fmt:
        tmpl = Template(prepare_format("{{json .}}" if fmt == "json" else fmt)[1])
    resp = client().open("GET", "/events", {k: v for k, v in params.items() if v}, own_conn=True)
    buf = b""
    while chunk := resp.read1(65536):
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            if not raw.strip():
                continue
            ev = json.loads(raw)
            sys.stdout.write((tmpl.render(ev) if tmpl else event_line(ev)) + "\n")
        sys.stdout.flush()


COMMANDS = [version, info, inspect, daemon, events]


@click.group("system")
def system_group():
    """Manage dockyard: disk usage, prune."""


@system_group.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images, not just dangling ones")
@click.option("--volumes", is_flag=True, help="Prune anonymous volumes too")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help="Filters (until=, label=)")
def system_prune(all_, volumes, force, filters):
    """Remove stopped containers, unused networks, dangling (or all unused) images and build cache.

    The same requests, in the same order, as `docker system prune`."""
    from dockyard.cli.client import filters_param
    from dockyard.cli.format import human_size

    items = ["all stopped containers", "all networks not used by at least one container"]
    if volumes:
        items.append("all anonymous volumes not used by at least one container")
    items.append("all images without at least one container associated to them" if all_ else "all dangling images")
    items.append("unused build cache" if not all_ else "all build cache")
    if not confirm("WARNING! This will remove:\n" + "".join(f"  - {i}\n" for i in items), force):
        return
    c = client()
    f = filters_param(filters)
    reclaimed = 0
    res = c.post("/containers/prune", {"filters": f}) or {}
    reclaimed += res.get("SpaceReclaimed") or 0
    _print_deleted("Deleted Containers:", res.get("ContainersDeleted"))
    res = c.post("/networks/prune", {"filters": f}) or {}
    _print_deleted("Deleted Networks:", res.get("NetworksDeleted"))
    if volumes:
        res = c.post("/volumes/prune", {"filters": f}) or {}
        reclaimed += res.get("SpaceReclaimed") or 0
        _print_deleted("Deleted Volumes:", res.get("VolumesDeleted"))
    res = c.post("/images/prune", {"filters": filters_param(list(filters) + [f"dangling={'false' if all_ else 'true'}"])}) or {}
    reclaimed += res.get("SpaceReclaimed") or 0
    _print_deleted("Deleted Images:", [f"{k.lower()}: {v}" for i in res.get("ImagesDeleted") or () for k, v in i.items()])
    res = c.post("/build/prune", {"all": 1 if all_ else None, "filters": f}) or {}
    reclaimed += res.get("SpaceReclaimed") or 0
    _print_deleted("Deleted build cache objects:", res.get("CachesDeleted"))
    print(f"Total reclaimed space: {human_size(reclaimed)}")


def _print_deleted(title: str, items) -> None:
    if items:
        print(title)
        print("".join(f"{i}\n" for i in items))


@system_group.command("df")
def system_df():
    """Show disk usage: images, containers, local volumes, build cache."""
    from dockyard.cli.format import human_size as _hs, tabwrite

    def human_size(n):  # docker system df prints go-units HumanSize: 4 significant digits
        return _hs(n, 4)

    d = client().get("/system/df") or {}
    images, ctrs, vols = d.get("Images") or [], d.get("Containers") or [], d.get("Volumes") or []
    used_images = {c.get("ImageID") for c in ctrs}
    img_size = sum(i.get("Size") or 0 for i in images)
    img_reclaim = sum(i.get("Size") or 0 for i in images if i.get("Id") not in used_images)
    ctr_size = sum(c.get("SizeRw") or 0 for c in ctrs)
    ctr_reclaim = sum(c.get("SizeRw") or 0 for c in ctrs if c.get("State") != "running")
    vol_size = sum(((v.get("UsageData") or {}).get("Size") or 0) for v in vols)
    vol_reclaim = sum(((v.get("UsageData") or {}).get("Size") or 0) for v in vols
                      if not (v.get("UsageData") or {}).get("RefCount"))
    cache = d.get("BuildCache") or []
    cache_size = sum(b.get("Size") or 0 for b in cache)

    def pct(part, whole):
        return f"{human_size(part)} ({int(part * 100 / whole)}%)" if whole else human_size(part)

    rows = ["TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE",
            f"Images\t{len(images)}\t{len(used_images & {i.get('Id') for i in images})}\t{human_size(img_size)}\t{pct(img_reclaim, img_size)}",
            f"Containers\t{len(ctrs)}\t{sum(1 for c in ctrs if c.get('State') == 'running')}\t{human_size(ctr_size)}\t{pct(ctr_reclaim, ctr_size)}",
            f"Local Volumes\t{len(vols)}\t{sum(1 for v in vols if (v.get('UsageData') or {}).get('RefCount'))}\t{human_size(vol_size)}\t{pct(vol_reclaim, vol_size)}",
            f"Build Cache\t{len(cache)}\t0\t{human_size(cache_size)}\t{human_size(cache_size)}"]
    print(tabwrite("\n".join(rows) + "\n"), end="")


COMMANDS.append(system_group)
