"""Container commands: run, create, start, attach, stop, kill, restart, rm, ps, logs, wait,
rename, top.

Each does the requests docker CLI 28 does (captured in the shared Docker Engine API reference, §2), so the
same daemon behaviour serves both. ``run`` is benchmarked: it makes four requests (create,
attach, wait, start) on three connections and nothing else.
"""

import os
import re
import sys
import time

import click

from dockyard.cli import opts as optparse
from dockyard.cli import stream
from dockyard.cli.client import APIError, DaemonUnavailable, filters_param, quote
from dockyard.cli.common import CLIError, client, err, for_each, split_ref
from dockyard.cli.hot import Detachable
from dockyard.cli.hot import bytes_size, detach_key_bytes, stats_row  # noqa: F401 - re-exported

_CREATE_FLAGS = [
    click.option("-d", "--detach", is_flag=True, help="Run in the background and print the container ID"),
    click.option("--rm", is_flag=True, help="Remove the container when it exits"),
    click.option("--name", help="Assign a name to the container"),
    click.option("-e", "--env", multiple=True, help="Set an environment variable (K=V, or K to copy ours)"),
    click.option("--env-file", multiple=True, help="Read environment variables from a file"),
    click.option("-w", "--workdir", help="Working directory inside the container"),
    click.option("-u", "--user", help="Username or UID[:GID]"),
    click.option("-h", "--hostname", help="Container host name"),
    click.option("--read-only", is_flag=True, help="Mount the root filesystem read-only"),
    click.option("--tmpfs", multiple=True, help="Mount a tmpfs (PATH[:OPTIONS])"),
    click.option("-v", "--volume", multiple=True, help="Bind mount or volume (SRC:DST[:ro])"),
    click.option("--mount", multiple=True, help="type=bind|volume|tmpfs,source=,target=,readonly"),
    click.option("--entrypoint", help="Override the image's entrypoint ('' clears it)"),
    click.option("-l", "--label", multiple=True, help="Set a label (K=V)"),
    click.option("--init", is_flag=True, help="Run an init process as PID 1"),
    click.option("-i", "--interactive", is_flag=True, help="Keep stdin open and attach it"),
    click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY"),
    click.option("--network", "--net", help="none, host, bridge or a network name"),
    click.option("-p", "--publish", multiple=True, help="Publish a port ([IP:][HOST:]CTR[/PROTO])"),
    click.option("--expose", multiple=True, help="Expose a port without publishing it"),
    click.option("-P", "--publish-all", is_flag=True, help="Publish every exposed port to a random host port"),
    click.option("--ip", help="IPv4 address on the network (user-defined networks)"),
    click.option("--mac-address", help="MAC address on the network"),
    click.option("--network-alias", multiple=True, help="Network-scoped alias (user-defined networks)"),
    click.option("--dns", multiple=True, help="DNS server"),
    click.option("--dns-search", multiple=True, help="DNS search domain"),
    click.option("--dns-option", multiple=True, help="resolv.conf option"),
    click.option("--add-host", multiple=True, help="Add a host:IP entry to /etc/hosts (IP may be host-gateway)"),
    click.option("-m", "--memory", help="Memory limit (e.g. 64m)"),
    click.option("--memory-swap", help="Memory plus swap limit; -1 is unlimited"),
    click.option("--cpus", help="Number of CPUs (e.g. 0.5)"),
    click.option("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)"),
    click.option("--cpuset-cpus", help="CPUs allowed (0-3, 0,1)"),
    click.option("--pids-limit", type=int, help="Process count limit (-1 unlimited)"),
    click.option("--privileged", is_flag=True, help="Give extended privileges"),
    click.option("--cap-add", multiple=True, help="Add a Linux capability"),
    click.option("--cap-drop", multiple=True, help="Drop a Linux capability"),
    click.option("--security-opt", multiple=True, help="Security options"),
    click.option("--stop-signal", help="Signal to stop the container"),
    click.option("--stop-timeout", type=int, help="Seconds to wait before killing on stop"),
    click.option("--restart", help="Restart policy (no, always, unless-stopped, on-failure[:N])"),
    click.option("--log-driver", help="Logging driver"),
    click.option("--log-opt", multiple=True, help="Log driver options (K=V)"),
    click.option("--health-cmd", help="Command to run to check health"),
    click.option("--health-interval", help="Time between running the check (ms|s|m|h)"),
    click.option("--health-timeout", help="Maximum time to allow one check to run (ms|s|m|h)"),
    click.option("--health-retries", type=int, help="Consecutive failures needed to report unhealthy"),
    click.option("--health-start-period", help="Start period for the container to initialize (ms|s|m|h)"),
    click.option("--no-healthcheck", is_flag=True, help="Disable any container-specified HEALTHCHECK"),
]

_ARGS_CTX = {"allow_interspersed_args": False}


def create_flags(f):
    for deco in reversed(_CREATE_FLAGS):
        f = deco(f)
    f = click.argument("command", nargs=-1, type=click.UNPROCESSED)(f)
    return click.argument("image")(f)


def _canonical(image: str) -> str:
    repo, tag = split_ref(image)
    return image if tag or "@" in image else image + ":latest"


def _registry_auth(image: str) -> dict:
    # Lazy: only a run that has to pull pays for reading ~/.docker/config.json.
    from dockyard.cli.registry import auth_header

    return auth_header(image)


def _pull(c, image: str):
    """POST /images/create?fromImage=, rendering the progress on stderr; errors raise."""
    repo, tag = split_ref(image.split("@")[0])
    if "@" in image:
        tag = image.split("@", 1)[1]
    for msg in c.stream_json("POST", "/images/create", {"fromImage": repo, "tag": tag or "latest"},
                             headers=_registry_auth(image)):
        if msg.get("errorDetail") or msg.get("error"):
            raise APIError(500, (msg.get("errorDetail") or {}).get("message") or msg["error"])
        if msg.get("status") and not msg.get("progressDetail"):
            line = f"{msg['id']}: {msg['status']}" if msg.get("id") else msg["status"]
            err(line)


def _create(c, o, image, command, console_size=(0, 0)) -> str:
    try:
        params, body = optparse.build_create(o, image, command, console_size)
    except ValueError as e:
        raise CLIError(f"dockyard: {e}", 125) from e
    try:
        resp = c.post("/containers/create", params, body)
    except APIError as e:
        # Only a missing image is worth a pull (a missing network or volume driver is also 404).
        if e.status != 404 or "no such image" not in e.message.lower():
            raise
        err(f"Unable to find image '{_canonical(image)}' locally")
        _pull(c, image)
        resp = c.post("/containers/create", params, body)
    for w in resp.get("Warnings") or ():
        err(f"WARNING: {w}")
    return resp["Id"]


def start_exit_code(message: str) -> int:
    """docker's toStatusError: the command could not be found (127) or run (126)."""
    if "executable file not found" in message or "no such file or directory" in message:
        return 127
    if "permission denied" in message or "is a directory" in message:
        return 126
    return 125


def _run_errors(fn):
    """run/create report every failure with exit status 125, like docker."""

    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except APIError as e:
            raise CLIError(f"dockyard: Error response from daemon: {e.message}", 125) from e
        except DaemonUnavailable as e:
            raise CLIError(str(e), 125) from e

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


@click.command(context_settings=_ARGS_CTX)
@click.option("--detach-keys", default="", help="Override the key sequence for detaching a container")
@create_flags
@_run_errors
def run(image, command, detach_keys, **o):
    """Create and start a container, attached unless -d."""
    c = client()
    if o["tty"] and o["interactive"] and not os.isatty(0):
        raise CLIError("the input device is not a TTY", 1)
    size = (stream.terminal_size() or (0, 0)) if o["tty"] else (0, 0)
    detach_key_bytes(detach_keys or "ctrl-p,ctrl-q")  # before create: a bad value leaves nothing
    cid = _create(c, o, image, command, size)
    if o["detach"]:
        _start(c, cid, o["rm"])
        print(cid)
        return
    # attach and wait go out together on their own connections; both must be answered (the
    # server has subscribed us to output and exit) before start.
    att = Detachable(c, cid, o["tty"], o["interactive"], detach_keys)
    pending_wait = stream.send_wait(c, cid, "removed" if o["rm"] else "next-exit")
    att.connected()
    waiter = c.receive(pending_wait)
    _start(c, cid, o["rm"])
    if o["tty"]:
        stream.resize(c, cid)
        stream.watch_winch(c, cid)
    else:
        stream.forward_signals(c, cid)
    att.run()
    sys.stdout.flush()
    raise SystemExit(0 if att.detached else stream.wait_status(waiter))


def _start(c, cid, remove):
    try:
        c.post(f"/containers/{cid}/start")
    except APIError as e:
        if remove:  # never leave an --rm container behind, whatever the daemon did
            try:
                c.delete(f"/containers/{cid}", {"force": 1, "v": 1})
            except APIError:
                pass
        raise CLIError(f"dockyard: Error response from daemon: {e.message}",
                       start_exit_code(e.message)) from e


@click.command(context_settings=_ARGS_CTX)
@create_flags
@_run_errors
def create(image, command, **o):
    """Create a container without starting it; prints its ID."""
    size = (stream.terminal_size() or (0, 0)) if o["tty"] else (0, 0)
    print(_create(client(), o, image, command, size))


@click.command()
@click.option("-a", "--attach", is_flag=True, help="Attach stdout/stderr and forward signals")
@click.option("-i", "--interactive", is_flag=True, help="Attach stdin")
@click.option("--detach-keys", default="", help="Override the key sequence for detaching a container")
@click.argument("containers", nargs=-1, required=True)
def start(attach, interactive, detach_keys, containers):
    """Start one or more stopped containers."""
    c = client()
    if not (attach or interactive):
        for_each(containers, lambda n: (c.post(f"/containers/{quote(n)}/start"), print(n)))
        return
    if len(containers) > 1:
        raise CLIError("you cannot start and attach multiple containers at once")
    info = c.get(f"/containers/{quote(containers[0])}/json")
    cid, tty = info["Id"], bool(info["Config"].get("Tty"))
    att = Detachable(c, cid, tty, interactive and bool(info["Config"].get("OpenStdin")), detach_keys).connected()
    waiter = stream.open_wait(c, cid, "removed" if info["HostConfig"].get("AutoRemove") else "next-exit")
    try:
        c.post(f"/containers/{cid}/start")
    except APIError as e:
        raise CLIError(f"Error response from daemon: {e.message}", start_exit_code(e.message)) from e
    if tty:
        stream.resize(c, cid)
        stream.watch_winch(c, cid)
    else:
        stream.forward_signals(c, cid)
    att.run()
    raise SystemExit(0 if att.detached else stream.wait_status(waiter))


@click.command()
@click.option("--no-stdin", is_flag=True, help="Do not attach stdin")
@click.option("--sig-proxy/--no-sig-proxy", default=True, help="Forward signals (no TTY only)")
@click.option("--detach-keys", default="", help="Override the key sequence for detaching a container")
@click.argument("container")
def attach(no_stdin, sig_proxy, detach_keys, container):
    """Attach to a running container's output (and stdin, if it was started with -i)."""
    c = client()
    info = c.get(f"/containers/{quote(container)}/json")
    if not info["State"].get("Running"):
        raise CLIError("You cannot attach to a stopped container, start it first")
    cid, tty = info["Id"], bool(info["Config"].get("Tty"))
    att = Detachable(c, cid, tty, not no_stdin and bool(info["Config"].get("OpenStdin")), detach_keys)
    pending_wait = stream.send_wait(c, cid, "not-running")
    att.connected()
    waiter = c.receive(pending_wait)
    if tty:
        stream.resize(c, cid)
        stream.watch_winch(c, cid)
    elif sig_proxy:
        stream.forward_signals(c, cid)
    att.run()
    raise SystemExit(0 if att.detached else stream.wait_status(waiter))


@click.command()
@click.option("-t", "--time", "timeout", type=int, help="Seconds to wait before killing")
@click.option("-s", "--signal", "sig", help="Signal to send first")
@click.argument("containers", nargs=-1, required=True)
def stop(timeout, sig, containers):
    """Stop one or more running containers (the stop signal, then SIGKILL)."""
    c = client()
    for_each(containers, lambda n: (c.post(f"/containers/{quote(n)}/stop",
                                           {"signal": sig, "t": timeout}), print(n)))


@click.command()
@click.option("-t", "--time", "timeout", type=int, help="Seconds to wait before killing")
@click.option("-s", "--signal", "sig", help="Signal to send first")
@click.argument("containers", nargs=-1, required=True)
def restart(timeout, sig, containers):
    """Restart one or more containers."""
    c = client()
    for_each(containers, lambda n: (c.post(f"/containers/{quote(n)}/restart",
                                           {"signal": sig, "t": timeout}), print(n)))


@click.command()
@click.option("-s", "--signal", "sig", help="Signal to send (default KILL)")
@click.argument("containers", nargs=-1, required=True)
def kill(sig, containers):
    """Kill one or more running containers."""
    c = client()
    for_each(containers, lambda n: (c.post(f"/containers/{quote(n)}/kill", {"signal": sig}), print(n)))


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill and remove running containers")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes too")
@click.argument("containers", nargs=-1, required=True)
def rm(force, volumes, containers):
    """Remove one or more containers."""
    c = client()
    params = {"force": 1 if force else None, "v": 1 if volumes else None}
    for_each(containers, lambda n: (c.delete(f"/containers/{quote(n)}", params), print(n)),
             quiet_not_found=force)


@click.command()
@click.argument("containers", nargs=-1, required=True)
def wait(containers):
    """Block until containers stop, then print their exit codes."""
    c = client()
    for_each(containers, lambda n: print(c.post(f"/containers/{quote(n)}/wait")["StatusCode"]))


@click.command()
@click.argument("container")
@click.argument("new_name")
def rename(container, new_name):
    """Rename a container."""
    client().post(f"/containers/{quote(container)}/rename", {"name": new_name})


@click.command(context_settings=_ARGS_CTX)
@click.argument("container")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
def top(container, ps_args):
    """Show the processes of a container (ps options may follow)."""
    res = client().get(f"/containers/{quote(container)}/top",
                       {"ps_args": " ".join(ps_args) if ps_args else None})
    text = "\t".join(res.get("Titles") or []) + "\n"
    text += "".join("\t".join(p) + "\n" for p in res.get("Processes") or [])
    from dockyard.cli.format import tabwrite
    sys.stdout.write(tabwrite(text, minwidth=20))


# -- logs ---------------------------------------------------------------------------------------

# Patterns, compiled on first use by re (its cache): only logs needs them, run does not.
_DURATION = r"^(?:(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$"
_DUR_PART = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)"
_DUR_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def api_timestamp(value: str, now: float | None = None) -> str:
    """docker's GetTimestamp: a Go duration ('10m', '1h30m') means that long before now; unix
    seconds pass through; RFC3339 (or a date, a local time without zone) becomes 'sec.nanos'."""
    now = time.time() if now is None else now
    if value != "0" and re.match(_DURATION, value):
        secs = sum(float(n) * _DUR_UNIT[u] for n, u in re.findall(_DUR_PART, value))
        return str(int(now - secs))
    if re.fullmatch(r"\d+(\.\d{1,9})?", value):
        return value
    import datetime  # only logs needs it; kept off run's import path

    try:
        t = datetime.datetime.fromisoformat(value)
    except ValueError as e:
        raise CLIError(f'failed to parse value as time or duration: "{value}"') from e
    if t.tzinfo is None:
        t = t.astimezone()  # docker reads zone-less times as local time
    ts = t.timestamp()
    return f"{int(ts)}.{t.microsecond * 1000:09d}"


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Follow log output")
@click.option("-n", "--tail", default="all", help="Number of lines from the end (default all)")
@click.option("--since", help="Since a timestamp (RFC3339, unix seconds) or duration (10m)")
@click.option("--until", help="Until a timestamp or duration")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@click.argument("container")
def logs(follow, tail, since, until, timestamps, container):
    """Fetch the logs of a container."""
    c = client()
    info = c.get(f"/containers/{quote(container)}/json")
    params = {"stdout": 1, "stderr": 1, "follow": 1 if follow else None,
              "since": api_timestamp(since) if since else None,
              "until": api_timestamp(until) if until else None,
              "timestamps": 1 if timestamps else None, "tail": tail}
    resp = c.open("GET", f"/containers/{info['Id']}/logs", params, own_conn=True)
    stream.copy_response(resp, bool(info["Config"].get("Tty")))


# -- ps -------------------------------------------------------------------------------------------

PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
              "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS",
              "Size": "SIZE", "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS",
              "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES", "Label": "LABEL",
              "Platform": "PLATFORM", "Image ID": "IMAGE ID"}


def _join_host_port(ip, port) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def format_ports(ports) -> str:
    """docker's DisplayablePorts: runs of consecutive ports collapse to ranges per (IP, proto)
    when published on the same number; other host mappings follow, one by one."""
    ports = sorted(ports or [], key=lambda p: (p.get("PrivatePort", 0), p.get("IP", ""),
                                               p.get("PublicPort", 0), p.get("Type", "")))
    groups: dict = {}  # (ip, proto) -> [first, last]; insertion order is display order
    result, mappings = [], []

    def form(key, first, last):
        ip, proto = key
        rng = str(first) if first == last else f"{first}-{last}"
        return (f"{_join_host_port(ip, rng)}->{rng}" if ip else rng) + "/" + proto

    for p in ports:
        cur, ip, proto = p.get("PrivatePort", 0), p.get("IP", ""), p.get("Type", "tcp")
        if ip and p.get("PublicPort", 0) != cur:
            mappings.append(f"{_join_host_port(ip, p.get('PublicPort', 0))}->{cur}/{proto}")
            continue
        key = (ip, proto)
        g = groups.get(key)
        if g is None:
            groups[key] = [cur, cur]
        elif cur == g[1] + 1:
            g[1] = cur
        else:
            result.append(form(key, *g))
            groups[key] = [cur, cur]
    result += [form(k, *g) for k, g in groups.items()]
    return ", ".join(result + mappings)


def ps_row(c: dict, trunc: bool = True, now: float | None = None) -> dict:
    """The fields docker's ps formatter offers, as strings, for one /containers/json item."""
    from dockyard.cli.format import ellipsis, go_quote, human_size, since, truncate_id

    image = c.get("Image", "")
    if trunc:
        if truncate_id(c.get("ImageID", "")) == truncate_id(image):
            image = truncate_id(image)
        elif "@" in image:
            image = image.split("@", 1)[0]
    names = [n[1:] if n.startswith("/") else n for n in c.get("Names") or []]
    if trunc:
        names = [n for n in names if "/" not in n][:1]
    command = c.get("Command", "")
    labels = c.get("Labels") or {}
    mounts = []
    for m in c.get("Mounts") or []:
        name = m.get("Name") or m.get("Source", "")
        mounts.append(ellipsis(name, 15) if trunc else name)
    size = human_size(c.get("SizeRw") or 0)
    if c.get("SizeRootFs"):
        size += f" (virtual {human_size(c['SizeRootFs'])})"
    created = c.get("Created", 0)
    return {
        "ID": truncate_id(c["Id"]) if trunc else c["Id"],
        "Image": image,
        "Command": go_quote(ellipsis(command, 20) if trunc else command),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(created)),
        "RunningFor": since(created, now),
        "Ports": format_ports(c.get("Ports")),
        "State": c.get("State", ""),
        "Status": c.get("Status", ""),
        "Size": size,
        "Names": ",".join(names),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Label": lambda k: labels.get(k, ""),
        "Mounts": ",".join(mounts),
        "Platform": None,  # docker 28 has it; nothing fills it without multi-platform images
        # docker prints these in Go's random map order; sorted is the stable equivalent
        "Networks": ",".join(sorted(((c.get("NetworkSettings") or {}).get("Networks") or {}))),
        "LocalVolumes": str(sum(1 for m in c.get("Mounts") or [] if m.get("Driver") == "local")),
    }


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default: running)")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs")
@click.option("-n", "--last", type=int, default=-1, help="Show the n last created containers")
@click.option("-l", "--latest", is_flag=True, help="Show the latest created container")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter (e.g. status=exited, label=k=v)")
@click.option("--format", "fmt", help="Go template, 'table ...' or 'json'")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
def ps(all_, quiet, last, latest, size, filters, fmt, no_trunc):
    """List containers."""
    from dockyard.cli.format import check_format, render_rows

    if latest and last == -1:
        last = 1
    if quiet:
        fmt = "{{.ID}}"
    fmt = fmt or PS_TABLE
    if fmt == "table":
        fmt = PS_TABLE
    check_format(fmt)
    try:
        f = filters_param(filters)
    except ValueError as e:
        raise CLIError(str(e)) from e
    want_size = size or ".Size" in fmt or fmt in ("json", "{{json .}}")
    params = {"all": 1 if all_ else None, "limit": last if last > 0 else None,
              "size": 1 if want_size else None, "filters": f}
    items = client().get("/containers/json", params) or []
    if size and fmt == PS_TABLE:
        fmt += "\t{{.Size}}"
    now = time.time()
    rows = [ps_row(item, not no_trunc, now) for item in items]
    sys.stdout.write(render_rows(fmt, rows, PS_HEADERS))


@click.command(context_settings=_ARGS_CTX)
@click.option("-d", "--detach", is_flag=True, help="Run the command in the background")
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open and attach it")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY")
@click.option("-e", "--env", multiple=True, help="Set an environment variable (K=V, or K to copy ours)")
@click.option("-u", "--user", help="Username or UID[:GID]")
@click.option("-w", "--workdir", help="Working directory inside the container")
@click.option("--privileged", is_flag=True, help="Give extended privileges to the command")
@click.option("--detach-keys", default="", help="Override the key sequence for detaching a container")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(detach, interactive, tty, env, user, workdir, privileged, detach_keys, container, command):
    """Run a command in a running container; exits with the command's status."""
    from dockyard.cli.hot import exec_command

    exec_command(client(), container, command, detach=detach, interactive=interactive, tty=tty, env=env, user=user,
                 workdir=workdir, privileged=privileged, detach_keys=detach_keys)


exec_.name = "exec"


@click.command()
@click.argument("containers", nargs=-1, required=True)
def pause(containers):
    """Pause all processes within one or more containers."""
    c = client()
    for_each(containers, lambda n: (c.post(f"/containers/{quote(n)}/pause"), print(n)))


@click.command()
@click.argument("containers", nargs=-1, required=True)
def unpause(containers):
    """Unpause all processes within one or more containers."""
    c = client()
    for_each(containers, lambda n: (c.post(f"/containers/{quote(n)}/unpause"), print(n)))

@click.command()
@click.option("-m", "--memory", help="Memory limit")
@click.option("--memory-swap", help="Swap limit equal to memory plus swap: -1 to enable unlimited swap")
@click.option("--cpus", help="Number of CPUs")
@click.option("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
@click.option("--cpu-quota", type=int, help="Limit CPU CFS (Completely Fair Scheduler) quota")
@click.option("--cpu-period", type=int, help="Limit CPU CFS (Completely Fair Scheduler) period")
@click.option("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
@click.option("--pids-limit", type=int, help="Tune container pids limit (set -1 for unlimited)")
@click.option("--restart", help="Restart policy to apply when a container exits")
@click.argument("containers", nargs=-1, required=True)
def update(containers, **o):
    """Update configuration of one or more containers."""
    try:
        body = optparse.build_update(o)
    except ValueError as e:
        raise CLIError(f"dockyard: {e}", 125) from e
    c = client()
    for_each(containers, lambda n: (c.post(f"/containers/{quote(n)}/update", body=body), print(n)))


COMMANDS = [run, create, start, attach, stop, restart, kill, rm, wait, rename, top, logs, ps, exec_, pause, unpause,
            update]


# -- stats --------------------------------------------------------------------------------------

@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)")
@click.option("--no-stream", is_flag=True, help="Print one sample and exit")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output")
@click.option("--format", "fmt", help="Go template (or 'table ...', 'json')")
@click.argument("containers", nargs=-1)
def stats(all_, no_stream, no_trunc, fmt, containers):
    """Display a live stream of container resource usage statistics."""
    from dockyard.cli.hot import stats_command

    stats_command(client(), containers, all_=all_, no_stream=no_stream, no_trunc=no_trunc, fmt=fmt)


COMMANDS.append(stats)


# -- diff / export / commit ---------------------------------------------------------------------

@click.command()
@click.argument("container")
def diff(container):
    """Inspect changes to files or directories on a container's filesystem."""
    for ch in client().get(f"/containers/{quote(container)}/changes") or []:
        print(f"{'CAD'[ch['Kind']] if ch['Kind'] in (0, 1, 2) else '?'} {ch['Path']}")


@click.command()
@click.option("-o", "--output", help="Write to a file, instead of STDOUT")
@click.argument("container")
def export(output, container):
    """Export a container's filesystem as a tar archive."""
    if not output and sys.stdout.isatty():
        raise CLIError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    resp = client().open("GET", f"/containers/{quote(container)}/export", own_conn=True)
    out = open(output + ".tmp", "wb") if output else sys.stdout.buffer
    try:
        while data := resp.read1():
            out.write(data)
        out.flush()
    except BaseException:
        if output:
            out.close()
            os.unlink(output + ".tmp")
        raise
    if output:
        out.close()
        os.replace(output + ".tmp", output)  # no half-written file under the final name


@click.command()
@click.option("-a", "--author", default="", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
@click.option("-c", "--change", "changes", multiple=True, help="Apply Dockerfile instruction to the created image")
@click.option("-m", "--message", default="", help="Commit message")
@click.option("-p", "--pause", type=click.BOOL, default=True, help="Pause container during commit (--pause=false)")
@click.argument("container")
@click.argument("repository", required=False)
def commit(author, changes, message, pause, container, repository):
    """Create a new image from a container's changes."""
    repo, tag = "", ""
    if repository:
        repo, tag = split_ref(repository)
    res = client().post("/commit", {"container": container, "repo": repo or None, "tag": tag or None,
                                            "comment": message or None, "author": author or None,
                                            "pause": None if pause else "0", "changes": list(changes) or None})
    print(res["Id"])


COMMANDS += [diff, export, commit]
