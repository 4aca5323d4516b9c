"""Engine objects -> Docker Engine API JSON (API 1.44 shapes). Pure functions, no I/O except the clock.

Python clients index keys directly (``x['Key']``), so absent lists/maps are rendered as ``null``
rather than left out. Inspect/list timestamps follow Docker: RFC3339Nano strings in inspect, integer
unix seconds in lists.
"""

import datetime
import os
import platform
import time

from dockyard import __version__
from dockyard.units import human_duration
from dockyard.api.server import API_VERSION, MIN_API_VERSION

ZERO_TIME = "0001-01-01T00:00:00Z"


def to_unix(ts: str) -> int:
    """RFC3339(Nano) -> unix seconds; 0 for the zero time or garbage."""
    if not ts or ts.startswith("0001-"):
        return 0
    s = ts.replace("Z", "+00:00")
    date, sep, rest = s.partition(".")
    if sep:  # drop the fraction: seconds are all we need, and fromisoformat rejects 9 digits
        i = next((k for k, ch in enumerate(rest) if not ch.isdigit()), len(rest))
        s = date + rest[i:]
    try:
        return int(datetime.datetime.fromisoformat(s).timestamp())
    except ValueError:
        return 0


def rfc3339_nano_fixed(ns: int) -> str:
    """Docker's log timestamp: always 9 fractional digits, UTC, 'Z'."""
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def status_text(c, now: float | None = None) -> str:
    st = c.state
    now = time.time() if now is None else now
    if st.status == "running":
        health = {"starting": " (health: starting)", "healthy": " (healthy)", "unhealthy": " (unhealthy)"}
        return "Up " + human_duration(now - to_unix(st.started_at)) + health.get((st.health or {}).get("Status"), "")
    if st.status == "paused":
        return "Up " + human_duration(now - to_unix(st.started_at)) + " (Paused)"
    if st.status == "restarting":
        return f"Restarting ({st.exit_code}) {human_duration(now - to_unix(st.finished_at))} ago"
    if st.status == "exited":
        if to_unix(st.finished_at) == 0:
            return f"Exited ({st.exit_code})"
        return f"Exited ({st.exit_code}) {human_duration(now - to_unix(st.finished_at))} ago"
    if st.status == "removing":
        return "Removal In Progress"
    if st.status == "dead":
        return "Dead"
    return "Created"


def _network_mode(c) -> str:
    mode = (c.host_config or {}).get("NetworkMode") or "default"
    return "bridge" if mode == "default" else mode


def _live(c) -> dict:
    return getattr(c, "network_settings", None) or {}


def _networks(c) -> dict:
    """Endpoint settings per network: what was asked for (EndpointsConfig) overlaid with the live
    endpoint the engine mirrored into ``network_settings`` while the container runs."""
    mode = _network_mode(c)
    asked = dict((c.networking_config or {}).get("EndpointsConfig") or {})
    if "default" in asked:
        asked.setdefault("bridge", asked.pop("default"))
    if mode.startswith("container:"):
        names = []
    elif mode in ("host", "none"):
        names = [mode]
    else:
        names = list(dict.fromkeys([mode] + [k for k in asked if k not in ("host", "none")]))
    live = _live(c).get("Networks") or {}
    out = {}
    for n in names:
        ep = asked.get(n) or {}
        d = {
            "IPAMConfig": ep.get("IPAMConfig"), "Links": ep.get("Links"), "Aliases": ep.get("Aliases"),
            "MacAddress": "", "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "DriverOpts": ep.get("DriverOpts"), "DNSNames": None,
        }
        d.update(live.get(n) or {})
        out[n] = d
    return out


def _ports(c) -> dict:
    """Inspect's Ports: published ones with their host side (HostPort a string) while running,
    exposed-only ones as null."""
    exposed = (c.config or {}).get("ExposedPorts") or {}
    live = _live(c).get("Ports") or {}
    if not live and not c.state.running:
        return {}
    out = {p: None for p in exposed}
    out.update({p: list(b) for p, b in live.items()})
    return out


def _port_list(c) -> list:
    """The container list's Ports: one item per published binding, plus exposed-only ports."""
    out = []
    live = _live(c).get("Ports") or {}
    if not c.state.running:
        return out  # docker ps shows no ports for a container that is not running
    for key in dict.fromkeys(list(live) + list((c.config or {}).get("ExposedPorts") or {})):
        port, _, proto = key.partition("/")
        if not port.isdigit():
            continue
        for b in live.get(key) or [None]:
            item = {"PrivatePort": int(port), "Type": proto or "tcp"}
            if b:
                item = {"IP": b["HostIp"], "PrivatePort": int(port), "PublicPort": int(b["HostPort"]),
                        "Type": proto or "tcp"}
            out.append(item)
    return out


def _top_level(c) -> dict:
    """Docker's deprecated top-level addresses: those of the default bridge endpoint."""
    b = (_live(c).get("Networks") or {}).get("bridge") or {}
    return {"EndpointID": b.get("EndpointID", ""), "Gateway": b.get("Gateway", ""),
            "IPAddress": b.get("IPAddress", ""), "IPPrefixLen": b.get("IPPrefixLen", 0),
            "MacAddress": b.get("MacAddress", "")}


def _command(c) -> str:
    # moby quotes only the arguments that contain a space, with single quotes (daemon/list.go).
    args = [f"'{a}'" if " " in a else a for a in (c.args or [])]
    return " ".join([c.path] + args) if c.path else ""


def container_summary(c, size: bool = False) -> dict:
    labels = (c.config or {}).get("Labels") or {}
    d = {
        "Id": c.id,
        "Names": [c.name],
        "Image": c.image,
        "ImageID": c.image_id,
        "Command": _command(c),
        "Created": to_unix(c.created),
        "Ports": _port_list(c),
        "Labels": labels,
        "State": c.state.status,
        "Status": status_text(c),
        "HostConfig": {"NetworkMode": _network_mode(c)},
        "NetworkSettings": {"Networks": _networks(c)},
        "Mounts": list(c.mounts or []),
    }
    if size:
        d["SizeRw"], d["SizeRootFs"] = 0, 0
    return d


def container_inspect(c, size: bool = False) -> dict:
    st = c.state
    hc = dict(c.host_config or {})
    lc = dict(hc.get("LogConfig") or {})
    if not lc.get("Type"):  # "" = the daemon default; docker-py only streams run() output for json-file
        lc["Type"] = "json-file"
    lc.setdefault("Config", {})
    hc["LogConfig"] = lc
    hc["NetworkMode"] = _network_mode(c)
    bundle = c.bundle or ""
    d = {
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": list(c.args or []),
        "State": {
            "Status": st.status,
            "Running": st.running,  # Docker: also while paused or restarting
            "Paused": st.status == "paused",
            "Restarting": st.status == "restarting",
            "OOMKilled": st.oom_killed,
            "Dead": st.status == "dead",
            "Pid": st.pid,
            "ExitCode": st.exit_code,
            "Error": st.error,
            "StartedAt": st.started_at,
            "FinishedAt": st.finished_at,
            **({"Health": st.health} if st.health else {}),
        },
        "Image": c.image_id,
        "ResolvConfPath": os.path.join(bundle, "resolv.conf") if bundle else "",
        "HostnamePath": os.path.join(bundle, "hostname") if bundle else "",
        "HostsPath": os.path.join(bundle, "hosts") if bundle else "",
        # moby fills it for json-file only: other drivers' files are not an API (as moby says).
        "LogPath": c.log_path if ((c.host_config or {}).get("LogConfig") or {}).get("Type", "json-file") == "json-file"
        else "",
        "Name": c.name,
        "RestartCount": c.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": hc,
        "GraphDriver": {"Name": "overlay2", "Data": {"MergedDir": c.rootfs} if c.rootfs else None},
        "Mounts": list(c.mounts or []),
        "Config": c.config,
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": _ports(c),
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPv6Gateway": "",
            **_top_level(c),
            "Networks": _networks(c),
        },
    }
    if size:
        d["SizeRw"], d["SizeRootFs"] = 0, 0
    return d


def image_summary(img) -> dict:
    cfg = img.config.get("config") or {}
    return {
        "Id": img.id,
        "ParentId": img.parent or "",
        "RepoTags": list(img.repo_tags),
        "RepoDigests": list(img.repo_digests),
        "Created": to_unix(img.created),
        "Size": img.size,
        "SharedSize": -1,
        "Labels": cfg.get("Labels"),
        "Containers": -1,
    }


def image_inspect(img) -> dict:
    oc = img.config
    cfg = oc.get("config") or {}
    # Docker's container-config shape with every key present (Go templates index them).
    config = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
              "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False,
              "Env": None, "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "",
              "Entrypoint": None, "OnBuild": None, "Labels": None}
    config.update(cfg)
    rootfs = oc.get("rootfs") or {}
    return {
        "Id": img.id,
        "RepoTags": list(img.repo_tags),
        "RepoDigests": list(img.repo_digests),
        "Parent": img.parent or "",
        "Comment": _last_comment(oc),
        "Created": img.created or ZERO_TIME,
        "DockerVersion": oc.get("docker_version", ""),
        "Author": oc.get("author", ""),
        "Config": config,
        "Architecture": oc.get("architecture", ""),
        "Variant": oc.get("variant"),
        "Os": oc.get("os", ""),
        "Size": img.size,
        "GraphDriver": {"Name": "overlay2", "Data": None},
        "RootFS": {"Type": rootfs.get("type", "layers"), "Layers": list(rootfs.get("diff_ids") or [])},
        "Metadata": {"LastTagTime": ZERO_TIME},
    }


def _last_comment(oc) -> str:
    hist = oc.get("history") or []
    return (hist[-1].get("comment") or "") if hist else ""


def volume(v) -> dict:
    return {
        "Name": v.name,
        "Driver": v.driver,
        "Mountpoint": v.mountpoint,
        "CreatedAt": v.created_at,
        "Labels": dict(v.labels or {}),
        "Scope": "local",
        "Options": dict(v.options) if v.options else None,
    }


def version() -> dict:
    u = os.uname()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(u.machine, u.machine)
    details = {
        "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": "dockyard",
        "GoVersion": "python" + platform.python_version(), "Os": "linux", "Arch": arch,
        "KernelVersion": u.release, "BuildTime": "", "Experimental": "false",
    }
    return {
        "Platform": {"Name": "Dockyard Engine"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "dockyard",
        "GoVersion": details["GoVersion"],
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": u.release,
        "BuildTime": "",
    }


def info(facts: dict) -> dict:
    """The engine's facts over defaults for every key the clients read."""
    u = os.uname()
    d = {
        "ID": "", "Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0, "ContainersStopped": 0,
        "Images": 0, "Driver": "overlay2", "DriverStatus": [], "Plugins": {
            "Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": None,
            "Log": ["json-file", "k8s-file"]},
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True,
        "CPUShares": True, "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": True,
        "Debug": False, "NFd": 0, "NGoroutines": 0, "SystemTime": _now_rfc3339(),
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs", "CgroupVersion": "1",
        "NEventsListener": 0, "KernelVersion": u.release, "OperatingSystem": "Dockyard",
        "OSVersion": "", "OSType": "linux",
        "Architecture": u.machine, "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"], "Mirrors": []},
        "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(), "DockerRootDir": "",
        "Name": u.nodename, "Labels": [], "ExperimentalBuild": False, "ServerVersion": __version__,
        "Runtimes": {"dockyard-runtime": {"path": "dockyard-runtime"}}, "DefaultRuntime": "dockyard-runtime",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "", "SecurityOptions": [
            "name=seccomp,profile=builtin"], "Warnings": None,
    }
    d.update(facts or {})
    return d


def _now_rfc3339() -> str:
    return rfc3339_nano_fixed(time.time_ns())


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def exec_inspect(ex) -> dict:
    """GET /exec/<id>/json (ExitCode is null until the process ran and exited)."""
    return {
        "ID": ex.id, "Running": ex.running, "ExitCode": ex.exit_code,
        "ProcessConfig": {"tty": ex.tty, "entrypoint": ex.cmd[0], "arguments": ex.cmd[1:],
                          "privileged": ex.privileged, **({"user": ex.user} if ex.user else {})},
        "OpenStdin": ex.open_stdin, "OpenStderr": ex.open_stderr, "OpenStdout": ex.open_stdout,
        "CanRemove": False, "ContainerID": ex.container_id, "DetachKeys": ex.detach_keys, "Pid": ex.pid,
    }
