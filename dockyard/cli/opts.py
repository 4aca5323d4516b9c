"""Pure translation of ``run``/``create`` flags into the Docker create request (query + body).

No I/O except reading ``--env-file`` files and the process environment for ``-e NAME``; bad
values raise ``ValueError`` with docker's wording, which the command prints as one line.
"""

import os
import re

# Patterns are compiled on first use (re caches them): run pays only for the flags it is given.
_UNIT = r"^(\d+(?:\.\d+)?)\s*([kmgtpe]?)i?b?$"


def ram_in_bytes(s: str) -> int:
    """go-units RAMInBytes: '64m', '1g', '512k', '100' (bytes); binary multiples."""
    m = re.match(_UNIT, s.strip(), re.I)
    if not m:
        raise ValueError(f"invalid size: '{s}'")
    mult = 1024 ** "bkmgtpe".index((m.group(2) or "b").lower())
    return int(float(m.group(1)) * mult)


def parse_env(values, env_files=(), environ=None) -> list[str] | None:
    """``-e K=V`` / ``-e K`` (taken from our environment if set) after ``--env-file`` lines."""
    environ = os.environ if environ is None else environ
    out = []

    def one(v):
        k, sep, _ = v.partition("=")
        if not k:
            raise ValueError(f"invalid environment variable: {v}")
        if sep:
            out.append(v)
        elif k in environ:
            out.append(f"{k}={environ[k]}")
        else:
            out.append(k)  # docker keeps it; the daemon treats a bare name as unset

    for path in env_files:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise ValueError(f"open {path}: {e.strerror.lower()}") from e
        for line in lines:
            line = line.lstrip()
            if line and not line.startswith("#"):
                one(line)
    for v in values:
        one(v)
    return out or None


def parse_kv(values, what="label") -> dict:
    """``k=v`` pairs (a bare ``k`` maps to ""), as for --label, --log-opt, -o."""
    out = {}
    for v in values:
        k, _, val = v.partition("=")
        if not k:
            raise ValueError(f"invalid {what}: {v!r}")
        out[k] = val
    return out


def _is_hostpath(src: str) -> bool:
    return src.startswith(("/", "."))


def parse_volume(spec: str) -> tuple[str | None, str, str]:
    """``-v [src:]dst[:mode]`` -> (source or None, target, mode). Relative host paths are made
    absolute as docker 23+ does for sources starting with '.'."""
    parts = spec.split(":")
    if len(parts) == 1:
        src, dst, mode = None, parts[0], ""
    elif len(parts) == 2:
        if parts[1].startswith("/"):
            src, dst, mode = parts[0], parts[1], ""
        else:
            src, dst, mode = None, parts[0], parts[1]
    elif len(parts) == 3:
        src, dst, mode = parts
    else:
        raise ValueError(f"invalid volume specification: '{spec}'")
    if not dst.startswith("/"):
        raise ValueError(f"invalid volume specification: '{spec}': invalid mount config: "
                         "mount path must be absolute")
    if src is not None and not src:
        raise ValueError(f"invalid volume specification: '{spec}'")
    for m in filter(None, mode.split(",")):
        if m not in ("ro", "rw", "z", "Z", "shared", "rshared", "slave", "rslave", "private",
                     "rprivate", "nocopy"):
            raise ValueError(f"invalid volume specification: '{spec}': invalid mode: {m}")
    if src is not None and _is_hostpath(src):
        src = os.path.abspath(src)
    return src, dst, mode


def parse_mount(spec: str) -> dict:
    """``--mount type=bind,source=/a,target=/b,readonly`` -> a HostConfig.Mounts item."""
    m: dict = {"Type": "volume"}
    for field in spec.split(","):
        k, sep, v = field.partition("=")
        k = k.strip().lower()
        if k == "type":
            if v not in ("bind", "volume", "tmpfs"):
                raise ValueError(f"invalid argument \"{spec}\" for \"--mount\" flag: "
                                 f"mount type '{v}' not supported")
            m["Type"] = v
        elif k in ("source", "src"):
            m["Source"] = v
        elif k in ("target", "destination", "dst"):
            m["Target"] = v
        elif k in ("readonly", "ro"):
            m["ReadOnly"] = (not sep) or v.lower() in ("1", "true")
        elif k == "bind-propagation":
            m.setdefault("BindOptions", {})["Propagation"] = v
        elif k == "volume-nocopy":
            m.setdefault("VolumeOptions", {})["NoCopy"] = (not sep) or v.lower() in ("1", "true")
        elif k == "volume-opt":
            ok, _, ov = v.partition("=")
            m.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {}).setdefault(
                "Options", {})[ok] = ov
        elif k == "tmpfs-size":
            m.setdefault("TmpfsOptions", {})["SizeBytes"] = ram_in_bytes(v)
        elif k == "tmpfs-mode":
            m.setdefault("TmpfsOptions", {})["Mode"] = int(v, 8)
        else:
            raise ValueError(f"invalid argument \"{spec}\" for \"--mount\" flag: "
                             f"unexpected key '{k}' in '{field}'")
    if not m.get("Target"):
        raise ValueError(f"invalid argument \"{spec}\" for \"--mount\" flag: target is required")
    if m["Type"] == "bind" and not m.get("Source"):
        raise ValueError(f"invalid argument \"{spec}\" for \"--mount\" flag: source is required "
                         "when type is bind")
    return m


_PORT = r"^(?:(?:(\[[0-9a-fA-F:.]+\]|[0-9.]*):)?([0-9-]*):)?([0-9-]+)(?:/(tcp|udp|sctp))?$"


def _port_range(s: str, spec: str) -> list[int]:
    a, _, b = s.partition("-")
    try:
        lo, hi = int(a), int(b or a)
    except ValueError as e:
        raise ValueError(f"invalid port specification: \"{spec}\"") from e
    if not (0 < lo <= hi <= 65535):
        raise ValueError(f"invalid port specification: \"{spec}\"")
    return list(range(lo, hi + 1))


def parse_ports(specs) -> tuple[dict, dict]:
    """``-p [ip:][hostPort:]ctrPort[/proto]`` -> (ExposedPorts, PortBindings)."""
    exposed, bindings = {}, {}
    for spec in specs:
        m = re.match(_PORT, spec)
        if not m:
            raise ValueError(f"invalid port specification: \"{spec}\"")
        ip, host, ctr, proto = m.group(1) or "", m.group(2) or "", m.group(3), m.group(4) or "tcp"
        ip = ip.strip("[]")
        ctr_ports = _port_range(ctr, spec)
        host_ports = _port_range(host, spec) if host else []
        if host_ports and len(host_ports) != len(ctr_ports) and len(host_ports) != 1:
            raise ValueError(f"invalid ranges specified for container and host Ports: {spec}")
        for i, p in enumerate(ctr_ports):
            key = f"{p}/{proto}"
            exposed[key] = {}
            if not host_ports:
                hp = ""
            elif len(host_ports) == 1 and len(ctr_ports) > 1:
                hp = str(host_ports[0])
            else:
                hp = str(host_ports[i])
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": hp})
    return exposed, bindings


def normalize_cap(c: str) -> str:
    c = c.upper()
    return c if c == "ALL" or c.startswith("CAP_") else "CAP_" + c


_RESTART = r"^(no|always|unless-stopped|on-failure)(?::(\d+))?$"


def parse_restart(s: str) -> dict:
    m = re.match(_RESTART, s or "no")
    if not m or (m.group(2) and m.group(1) != "on-failure"):
        raise ValueError(f"invalid restart policy '{s}'")
    return {"Name": m.group(1), "MaximumRetryCount": int(m.group(2) or 0)}


def build_update(o: dict) -> dict:
    """`update` flags -> the /containers/{id}/update body (fields left out keep their value)."""
    body = {}
    if o.get("memory"):
        body["Memory"] = ram_in_bytes(o["memory"])
    if o.get("memory_swap"):
        body["MemorySwap"] = -1 if o["memory_swap"] == "-1" else ram_in_bytes(o["memory_swap"])
    if o.get("cpus"):
        try:
            body["NanoCpus"] = int(round(float(o["cpus"]) * 1e9))
        except ValueError as e:
            raise ValueError(f"invalid argument \"{o['cpus']}\" for \"--cpus\" flag") from e
    for flag, key in (("cpu_shares", "CpuShares"), ("cpu_quota", "CpuQuota"), ("cpu_period", "CpuPeriod"),
                      ("cpuset_cpus", "CpusetCpus"), ("pids_limit", "PidsLimit")):
        if o.get(flag) is not None:
            body[key] = o[flag]
    if o.get("restart"):
        body["RestartPolicy"] = parse_restart(o["restart"])
    if not body:
        raise ValueError("you must provide one or more flags when using this command")
    return body


def _endpoint(o: dict) -> dict:
    """The EndpointSettings of the run's network (--ip, --network-alias, --mac-address), as docker 28."""
    ep = {}
    if o.get("ip"):
        ep["IPAMConfig"] = {"IPv4Address": o["ip"]}
    if o.get("network_alias"):
        ep["Aliases"] = list(o["network_alias"])
    if o.get("mac_address"):
        ep["MacAddress"] = o["mac_address"]
    return ep


_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_duration(s: str, flag: str) -> int:
    """A Go duration ("1m30s", "500ms", "2s") -> nanoseconds."""
    parts = re.findall(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)", s or "")
    if not s or "".join(a + u for a, u in parts) != s:
        raise ValueError(f'invalid argument "{s}" for "{flag}" flag: time: invalid duration "{s}"')
    return int(sum(float(a) * _DURATION_UNITS[u] for a, u in parts))


def parse_healthcheck(o: dict) -> dict | None:
    """The --health-* / --no-healthcheck flags -> Config.Healthcheck (None: the image's)."""
    fields = {k: o.get(k) for k in ("health_cmd", "health_interval", "health_timeout", "health_retries",
                                    "health_start_period")}
    if o.get("no_healthcheck"):
        if any(v is not None for v in fields.values()):
            raise ValueError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if all(v is None for v in fields.values()):
        return None
    hc = {"Test": ["CMD-SHELL", o["health_cmd"]] if o.get("health_cmd") else None}
    for key, flag in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start_period")):
        v = parse_duration(fields["health_" + flag], "--health-" + flag.replace("_", "-")) \
            if fields["health_" + flag] else 0
        if v < 0:
            raise ValueError(f"--health-{flag.replace('_', '-')} cannot be negative")
        hc[key] = v
    retries = fields["health_retries"] or 0
    if retries < 0:
        raise ValueError("--health-retries cannot be negative")
    hc["Retries"] = retries
    return hc


def build_create(o: dict, image: str, command: tuple, console_size=(0, 0)) -> tuple[dict, dict]:
    """Options dict (click's parameter names) -> (query params, create body)."""
    binds, volumes = [], {}
    for spec in o.get("volume") or ():
        src, dst, mode = parse_volume(spec)
        if src is None:
            volumes[dst] = {}  # anonymous volume
        else:
            binds.append(f"{src}:{dst}" + (f":{mode}" if mode else ""))
    tmpfs = {}
    for t in o.get("tmpfs") or ():
        path, _, topts = t.partition(":")
        if not path.startswith("/"):
            raise ValueError(f"invalid tmpfs specification: '{t}': mount path must be absolute")
        tmpfs[path] = topts
    exposed, port_bindings = parse_ports(o.get("publish") or ())
    for e in o.get("expose") or ():
        exposed[e if "/" in e else e + "/tcp"] = {}

    interactive, tty, detach = bool(o.get("interactive")), bool(o.get("tty")), bool(o.get("detach"))
    entrypoint = None
    if o.get("entrypoint") is not None:
        entrypoint = [o["entrypoint"]]  # '' clears the image's entrypoint, as docker does
    network = o.get("network") or "default"

    memory = ram_in_bytes(o["memory"]) if o.get("memory") else 0
    swap = o.get("memory_swap")
    memory_swap = -1 if swap == "-1" else (ram_in_bytes(swap) if swap else 0)
    nano_cpus = 0
    if o.get("cpus"):
        try:
            nano_cpus = int(round(float(o["cpus"]) * 1e9))
        except ValueError as e:
            raise ValueError(f"invalid argument \"{o['cpus']}\" for \"--cpus\" flag") from e

    host_config = {
        "Binds": binds or None,
        "NetworkMode": network,
        "PortBindings": port_bindings,
        "PublishAllPorts": bool(o.get("publish_all")),
        "Dns": list(o.get("dns") or ()),
        "DnsSearch": list(o.get("dns_search") or ()),
        "DnsOptions": list(o.get("dns_option") or ()),
        "ExtraHosts": [h.replace("=", ":", 1) if "=" in h else h for h in o.get("add_host") or ()] or None,
        "RestartPolicy": parse_restart(o.get("restart")),
        "AutoRemove": bool(o.get("rm")),
        "LogConfig": {"Type": o.get("log_driver") or "",
                      "Config": parse_kv(o.get("log_opt") or (), "log-opt")},
        "Mounts": [parse_mount(m) for m in o.get("mount") or ()] or None,
        "Tmpfs": tmpfs or None,
        "ReadonlyRootfs": bool(o.get("read_only")),
        "Privileged": bool(o.get("privileged")),
        "CapAdd": [normalize_cap(c) for c in o.get("cap_add") or ()] or None,
        "CapDrop": [normalize_cap(c) for c in o.get("cap_drop") or ()] or None,
        "SecurityOpt": list(o.get("security_opt") or ()) or None,
        "Init": True if o.get("init") else None,
        "Memory": memory,
        "MemorySwap": memory_swap,
        "NanoCpus": nano_cpus,
        "CpuShares": o.get("cpu_shares") or 0,
        "CpusetCpus": o.get("cpuset_cpus") or "",
        "PidsLimit": o.get("pids_limit"),
        "ConsoleSize": list(console_size),
    }
    config = {
        "Hostname": o.get("hostname") or "",
        "Domainname": "",
        "User": o.get("user") or "",
        "AttachStdin": interactive and not detach,
        "AttachStdout": not detach,
        "AttachStderr": not detach,
        "Tty": tty,
        "OpenStdin": interactive,
        # run -i closes the process's stdin when our stdin ends (docker sets this too)
        "StdinOnce": interactive and not detach,
        "Env": parse_env(o.get("env") or (), o.get("env_file") or ()),
        "Cmd": list(command) or None,
        "Image": image,
        "Volumes": volumes,
        "WorkingDir": o.get("workdir") or "",
        "Entrypoint": entrypoint,
        "Labels": parse_kv(o.get("label") or ()),
        "ExposedPorts": exposed or None,
        "HostConfig": host_config,
        "NetworkingConfig": {"EndpointsConfig": {network: _endpoint(o)}},
    }
    healthcheck = parse_healthcheck(o)
    if healthcheck is not None:
        config["Healthcheck"] = healthcheck
    if o.get("stop_signal"):
        config["StopSignal"] = o["stop_signal"]
    if o.get("stop_timeout") is not None:
        config["StopTimeout"] = o["stop_timeout"]
    params = {"name": o.get("name") or None}
    return params, config
