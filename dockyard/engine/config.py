"""Create-time planning (pure): merge a Docker create body with the image defaults, fill HostConfig
defaults, and parse every way of asking for a mount (-v, --mount, --tmpfs, image VOLUMEs) into one list
of Docker ``Mounts[]`` items. Errors are InvalidArgument with Docker's wording; nothing here touches
the disk, so the engine can validate a request completely before its commit point.
"""

import copy
import re

from dockyard import errdefs

_RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


def _env_key(item: str) -> str:
    return item.split("=", 1)[0]


def merge_env(image_env: list, env: list) -> list:
    """Image Env first, then the container's; a container entry replaces the image's with the same key."""
    out = {}
    for item in list(image_env or ()) + list(env or ()):
        out[_env_key(item)] = item
    return list(out.values())


def _bad(where: str, key: str, want: str, v) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"invalid {where}.{key}: expected {want}, got {type(v).__name__} {v!r:.60}")


def _strslice(where: str, key: str, v):
    """Docker's StrSlice: null, a string (one element) or a list of strings."""
    if v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v)):
        return v
    if isinstance(v, str):
        return [v]
    raise _bad(where, key, "a list of strings", v)


_CONFIG_TYPES = {"Env": list, "Labels": dict, "ExposedPorts": dict, "Volumes": dict, "WorkingDir": str,
                 "User": str, "Hostname": str, "Domainname": str, "StopSignal": str, "Image": str,
                 "Tty": bool, "OpenStdin": bool, "StdinOnce": bool, "AttachStdin": bool,
                 "AttachStdout": bool, "AttachStderr": bool, "StopTimeout": int}
_HOST_TYPES = {"Binds": list, "CapAdd": list, "CapDrop": list, "SecurityOpt": list, "Mounts": list,
               "GroupAdd": list, "Ulimits": list, "Dns": list, "DnsSearch": list, "DnsOptions": list,
               "ExtraHosts": list, "ConsoleSize": list, "Tmpfs": dict, "Sysctls": dict, "LogConfig": dict, "RestartPolicy": dict,
               "NetworkMode": str, "PidMode": str, "IpcMode": str, "CpusetCpus": str, "CpusetMems": str,
               "Privileged": bool, "ReadonlyRootfs": bool, "AutoRemove": bool, "Init": bool,
               "Memory": int, "MemorySwap": int, "MemoryReservation": int, "NanoCpus": int,
               "CpuShares": int, "CpuQuota": int, "CpuPeriod": int, "PidsLimit": int, "ShmSize": int}


def check_types(where: str, body: dict, types: dict):
    """Reject wrongly typed fields of a create body with one clear line (null is always allowed)."""
    if not isinstance(body, dict):
        raise errdefs.InvalidArgument(f"invalid {where}: expected an object")
    for key, want in types.items():
        v = body.get(key)
        if v is None:
            continue
        ok = isinstance(v, want) and not (want is int and isinstance(v, bool))
        if not ok:
            raise _bad(where, key, {list: "a list", dict: "an object", str: "a string", bool: "a boolean",
                                    int: "an integer"}[want], v)


def merge_config(config: dict, image_config: dict) -> dict:
    """Docker's merge of the image's config into the container's Config (daemon/create.go rules)."""
    check_types("Config", config, _CONFIG_TYPES)
    c = copy.deepcopy(config)
    for key in ("Cmd", "Entrypoint"):
        c[key] = _strslice("Config", key, c.get(key))
    if not all(isinstance(e, str) for e in c.get("Env") or ()):
        raise _bad("Config", "Env", "a list of strings", c["Env"])
    img = image_config or {}
    c["Env"] = merge_env(img.get("Env"), c.get("Env"))
    if c.get("Entrypoint") is None:
        c["Entrypoint"] = img.get("Entrypoint")
        if not c.get("Cmd"):
            c["Cmd"] = img.get("Cmd")
    # An explicit Entrypoint resets the image's Cmd: only the request's Cmd (if any) stays.
    if c.get("Entrypoint") == [""]:
        c["Entrypoint"] = None
    if not (c.get("Entrypoint") or []) + (c.get("Cmd") or []):
        raise errdefs.InvalidArgument("No command specified")
    for key in ("WorkingDir", "User", "StopSignal"):
        if not c.get(key) and img.get(key):
            c[key] = img[key]
    if c.get("Healthcheck") is None and img.get("Healthcheck"):
        c["Healthcheck"] = img["Healthcheck"]
    elif c.get("Healthcheck") and img.get("Healthcheck"):
        # Docker: a healthcheck given without a Test (or with zero timings) inherits the image's.
        hc = dict(c["Healthcheck"])
        for k in ("Test", "Interval", "Timeout", "StartPeriod", "Retries"):
            if not hc.get(k) and img["Healthcheck"].get(k):
                hc[k] = img["Healthcheck"][k]
        c["Healthcheck"] = hc
    for key in ("Labels", "ExposedPorts", "Volumes"):
        merged = dict(img.get(key) or {})
        merged.update(c.get(key) or {})
        c[key] = merged or ({} if key == "Labels" else None)
    if c.get("WorkingDir") and not c["WorkingDir"].startswith("/"):
        raise errdefs.InvalidArgument(
            f"the working directory '{c['WorkingDir']}' is invalid, it needs to be an absolute path")
    for key, default in (("Cmd", None), ("Entrypoint", None), ("Tty", False), ("OpenStdin", False), ("StdinOnce", False),
                         ("AttachStdin", False), ("AttachStdout", False), ("AttachStderr", False),
                         ("Hostname", ""), ("Domainname", ""), ("User", ""), ("WorkingDir", "")):
        c.setdefault(key, default)
    return c


def fill_host_config(hc: dict | None) -> dict:
    check_types("HostConfig", hc or {}, _HOST_TYPES)
    hc = copy.deepcopy(hc or {})
    if hc.get("NetworkMode") in (None, "", "default"):
        hc["NetworkMode"] = "bridge"
    if hc["NetworkMode"] == "container:":
        raise errdefs.InvalidArgument("invalid network mode: container: needs a container name or ID")
    # Other names are user networks: the engine checks they exist.
    log = hc.get("LogConfig") or {}
    hc["LogConfig"] = {"Type": log.get("Type") or "json-file", "Config": log.get("Config") or {}}
    validate_log_opts(hc["LogConfig"]["Type"], hc["LogConfig"]["Config"])
    rp = hc.get("RestartPolicy") or {}
    name = rp.get("Name") or "no"
    if name not in _RESTART_POLICIES:
        raise errdefs.InvalidArgument(f"invalid restart policy '{name}'")
    count = rp.get("MaximumRetryCount") or 0
    if count and name != "on-failure":
        raise errdefs.InvalidArgument("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    hc["RestartPolicy"] = {"Name": name, "MaximumRetryCount": count}
    if hc.get("AutoRemove") and name != "no":
        raise errdefs.InvalidArgument("can't create 'AutoRemove' container with restart policy")
    for key in ("Binds", "CapAdd", "CapDrop", "SecurityOpt", "Mounts", "GroupAdd", "Ulimits"):
        hc.setdefault(key, None)
    hc.setdefault("Tmpfs", None)
    hc.setdefault("Privileged", False)
    hc.setdefault("ReadonlyRootfs", False)
    hc.setdefault("AutoRemove", False)
    hc.setdefault("Init", None)
    for key in ("Memory", "MemorySwap", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "MemoryReservation"):
        v = hc.setdefault(key, 0) or 0
        if not isinstance(v, int):
            raise errdefs.InvalidArgument(f"invalid {key}: {v!r}")
    if hc["Memory"] and hc["Memory"] < 6 * 1024 * 1024:
        raise errdefs.InvalidArgument("Minimum memory limit allowed is 6MB")
    if hc["MemorySwap"] > 0 and hc["Memory"] and hc["MemorySwap"] < hc["Memory"]:
        raise errdefs.InvalidArgument(
            "Minimum memoryswap limit should be larger than memory limit, see usage")
    if hc["NanoCpus"] and (hc["CpuQuota"] or hc["CpuPeriod"]):
        raise errdefs.InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    hc.setdefault("CpusetCpus", "")
    hc.setdefault("PidsLimit", None)
    return hc


def validate_log_opts(driver: str, opts: dict):
    """The log driver and its options, checked at create (Docker's wording) so that start cannot
    fail on them; the rules live with the drivers (engine/logdrivers.py)."""
    from dockyard.engine import logdrivers  # it imports parse_size from here

    if not isinstance(opts, dict):
        raise errdefs.InvalidArgument("invalid HostConfig.LogConfig.Config: expected an object")
    logdrivers.validate(driver, opts)


_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$", re.I)


def parse_size(text) -> int | None:
    """'10m', '1.5g', '512k', '100' -> bytes (Docker's RAMInBytes: binary units); None/'' -> None."""
    if text in (None, ""):
        return None
    m = _SIZE_RE.match(str(text).strip())
    if not m:
        raise errdefs.InvalidArgument(f"invalid size: '{text}'")
    return int(float(m.group(1)) * 1024 ** "bkmgtp".index(m.group(2).lower() or "b"))


def _bad_spec(spec: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"invalid volume specification: '{spec}'")


def plan_mounts(host_config: dict, image_volumes: dict | None) -> list[dict]:
    """Every requested mount as a Docker ``Mounts[]`` item, in request order.

    Volume items carry ``Name`` ("" for an anonymous volume still to be created) and no Source yet;
    tmpfs items carry ``TmpfsOptions`` (an internal field the engine drops when rendering is its
    business, the API's). Duplicate destinations are an error, as in Docker.
    """
    out = []
    for spec in host_config.get("Binds") or ():
        parts = spec.split(":")
        if len(parts) == 2:
            src, dst, opts = parts[0], parts[1], ""
        elif len(parts) == 3:
            src, dst, opts = parts
        else:
            raise _bad_spec(spec)
        if not src or not dst.startswith("/"):
            raise _bad_spec(spec)
        flags = [o for o in opts.split(",") if o]
        for o in flags:
            if o not in ("ro", "rw", "z", "Z", "nocopy", *_PROPAGATIONS):
                raise errdefs.InvalidArgument(f"invalid mode: {opts}")
        rw = "ro" not in flags
        prop = next((o for o in flags if o in _PROPAGATIONS), "")
        if src.startswith("/"):
            out.append({"Type": "bind", "Source": src, "Destination": dst, "Mode": opts, "RW": rw,
                        "Propagation": prop or "rprivate", "CreateSource": True})
        else:
            out.append({"Type": "volume", "Name": src, "Source": "", "Destination": dst, "Driver": "local",
                        "Mode": opts or "z", "RW": rw, "Propagation": "", "NoCopy": "nocopy" in flags})
    for m in host_config.get("Mounts") or ():
        typ, target, src = m.get("Type"), m.get("Target") or "", m.get("Source") or ""
        if not target.startswith("/"):
            raise errdefs.InvalidArgument(f"invalid mount config for type \"{typ}\": invalid mount path: '{target}' mount path must be absolute")
        rw = not m.get("ReadOnly")
        if typ == "bind":
            if not src.startswith("/"):
                raise errdefs.InvalidArgument(f'invalid mount config for type "bind": invalid mount path: \'{src}\' mount path must be absolute')
            prop = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
            out.append({"Type": "bind", "Source": src, "Destination": target, "Mode": "", "RW": rw,
                        "Propagation": prop, "CreateSource": False})
        elif typ == "volume":
            vo = m.get("VolumeOptions") or {}
            out.append({"Type": "volume", "Name": src, "Source": "", "Destination": target, "Driver": "local",
                        "Mode": "z", "RW": rw, "Propagation": "", "NoCopy": bool(vo.get("NoCopy")),
                        "Labels": vo.get("Labels") or {}})
        elif typ == "tmpfs":
            if src:
                raise errdefs.InvalidArgument('invalid mount config for type "tmpfs": Source must not be specified')
            to = m.get("TmpfsOptions") or {}
            opts = []
            if to.get("SizeBytes"):
                opts.append(f"size={to['SizeBytes']}")
            if to.get("Mode"):
                opts.append(f"mode={to['Mode']:o}")
            out.append({"Type": "tmpfs", "Source": "", "Destination": target, "Mode": "", "RW": rw,
                        "Propagation": "", "TmpfsOptions": opts})
        else:
            raise errdefs.InvalidArgument(f"mount type unknown: \"{typ}\"")
    for dst, opts in (host_config.get("Tmpfs") or {}).items():
        if not dst.startswith("/"):
            raise errdefs.InvalidArgument(f"invalid tmpfs destination: '{dst}'")
        flags = [o for o in (opts or "").split(",") if o]
        out.append({"Type": "tmpfs", "Source": "", "Destination": dst, "Mode": "", "RW": "ro" not in flags,
                    "Propagation": "", "TmpfsOptions": [o for o in flags if o not in ("ro", "rw")],
                    "Hidden": True})  # --tmpfs mounts are not listed in Docker's Mounts[]
    seen = set()
    for m in out:
        d = m["Destination"].rstrip("/") or "/"
        if d in seen:
            raise errdefs.InvalidArgument(f"Duplicate mount point: {d}")
        seen.add(d)
    for dst in (image_volumes or {}):
        if dst.rstrip("/") not in seen:
            out.append({"Type": "volume", "Name": "", "Source": "", "Destination": dst, "Driver": "local",
                        "Mode": "", "RW": True, "Propagation": "", "NoCopy": False})
    return out
