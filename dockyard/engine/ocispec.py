"""From a stored Container to the OCI runtime config (config.json) and the files bound into it.

The planners here are pure functions of the container, the parsed passwd/group text and the host
facts, so they are testable without root; the engine does the I/O (reading /etc/passwd through
``sysmount.read_in_root``, writing the bundle files). The base spec (default mounts, masked paths,
capabilities, seccomp) comes from ``dockyard.runtime.spec``; this module adds what Docker's
HostConfig asks for.
"""

import json
import os
import signal as _signal

from dockyard import errdefs

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INIT_BINARIES = ("/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/bin/tini")
INIT_PATH = "/sbin/docker-init"


# ---- users ---------------------------------------------------------------------------------------

def _entries(text: str | None, fields: int):
    for line in (text or "").splitlines():
        parts = line.split(":")
        if len(parts) >= fields and not line.startswith("#"):
            yield parts


def resolve_user(spec: str, passwd: str | None, group: str | None, group_add=()) -> dict:
    """Docker's ``-u name|uid[:group|gid]`` -> {"uid", "gid", "additionalGids", "home"}.

    Numeric IDs need no files. A name not in passwd is an error with Docker's wording. Supplementary
    groups are the primary group, those listing the user as a member, and ``--group-add``.
    """
    user, _, grp = (spec or "").partition(":")
    uid, gid, home, uname = 0, 0, "/", "root"
    if user:
        found = None
        for p in _entries(passwd, 7):
            if p[0] == user or (user.isdigit() and p[2] == user):
                found = p
                break
        if found:
            uname, uid, gid, home = found[0], int(found[2]), int(found[3]), found[5] or "/"
        elif user.isdigit():
            uid, uname = int(user), ""
        else:
            raise errdefs.InvalidArgument(f"unable to find user {user}: no matching entries in passwd file")
    else:
        for p in _entries(passwd, 7):
            if p[2] == "0":
                home = p[5] or "/"
                break
    if grp:
        gid = _group_id(grp, group)
    extra = []
    if uname:
        for g in _entries(group, 4):
            if uname in g[3].split(",") and g[2].isdigit():
                extra.append(int(g[2]))
    for g in group_add or ():
        extra.append(_group_id(str(g), group))
    extra = list(dict.fromkeys([gid] + extra))  # Docker lists the primary group too (id: groups=33,...)
    return {"uid": uid, "gid": gid, "additionalGids": extra, "home": home}


def _group_id(name: str, group: str | None) -> int:
    for g in _entries(group, 4):
        if g[0] == name or (name.isdigit() and g[2] == name):
            return int(g[2])
    if name.isdigit():
        return int(name)
    raise errdefs.InvalidArgument(f"unable to find group {name}: no matching entries in group file")


# ---- files bound into the container ----------------------------------------------------------------

def hosts_file(hostname: str, domainname: str = "", extra_hosts=(), ips=()) -> str:
    """Docker's /etc/hosts: the localhost block, --add-host entries, then the container's own
    addresses (127.0.1.1 when it has none, e.g. --network none)."""
    fqdn = f"{hostname}.{domainname}" if domainname else hostname
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes",
             "ff02::2\tip6-allrouters"]
    for item in extra_hosts or ():
        name, _, ip = item.partition(":")
        lines.append(f"{ip}\t{name}")
    for ip in ips or ["127.0.1.1"]:
        lines.append(f"{ip}\t{fqdn} {hostname}" if fqdn != hostname else f"{ip}\t{hostname}")
    return "\n".join(lines) + "\n"


def resolv_conf(host_text: str, network_mode: str, dns=(), dns_search=(), dns_options=(),
                embedded: str | None = None) -> str:
    """The host's resolv.conf for host networking; otherwise without loopback nameservers (they would
    point into the container's own netns), falling back to public resolvers as Docker does.
    ``embedded``: the embedded DNS's address on a user network; it comes first (container names
    resolve only there), followed by any --dns servers."""
    lines = host_text.splitlines()
    if embedded:
        lines = [l for l in lines if l.split()[:1] != ["nameserver"]]
        dns = [embedded] + list(dns or ())
    if network_mode != "host":
        lines = [l for l in lines if not (l.split()[:1] == ["nameserver"] and len(l.split()) > 1
                                          and (l.split()[1].startswith("127.") or l.split()[1] == "::1"))]
        if not any(l.split()[:1] == ["nameserver"] for l in lines) and not dns:
            lines += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    if dns:
        lines = [l for l in lines if l.split()[:1] != ["nameserver"]] + [f"nameserver {d}" for d in dns]
    if dns_search:
        lines = [l for l in lines if l.split()[:1] not in (["search"], ["domain"])]
        lines.append("search " + " ".join(dns_search))
    if dns_options:
        lines = [l for l in lines if l.split()[:1] != ["options"]]
        lines.append("options " + " ".join(dns_options))
    return "\n".join(lines) + "\n"


# ---- the OCI config --------------------------------------------------------------------------------

def process_env(config: dict, hostname: str, home: str) -> list:
    """Docker's order: PATH, HOSTNAME, TERM (tty), then Config.Env replacing by key, then HOME."""
    from dockyard.engine.config import merge_env

    base = ["PATH=" + DEFAULT_PATH, f"HOSTNAME={hostname}"] + (["TERM=xterm"] if config.get("Tty") else [])
    env = merge_env(base, config.get("Env"))
    if not any(e.startswith("HOME=") for e in env):
        env.append("HOME=" + home)
    return env


def find_init() -> str | None:
    return next((p for p in INIT_BINARIES if os.access(p, os.X_OK)), None)


def seccomp_from_docker(profile: dict) -> dict:
    """Docker's seccomp profile JSON -> the OCI linux.seccomp object.

    Conditional entries (includes/excludes on caps or arch) are kept only when unconditional; the
    default profile path is the runtime's own, so this serves explicit ``--security-opt seccomp=f``.
    """
    arches = list(profile.get("architectures") or [])
    for m in profile.get("archMap") or ():
        arches += [m["architecture"], *m.get("subArchitectures", [])]
    out = {"defaultAction": profile.get("defaultAction", "SCMP_ACT_ERRNO"), "architectures": arches,
           "syscalls": []}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    for s in profile.get("syscalls") or ():
        if s.get("includes") or s.get("excludes"):
            continue
        names = s.get("names") or ([s["name"]] if s.get("name") else [])
        item = {"names": names, "action": s["action"]}
        for k in ("args", "errnoRet"):
            if s.get(k) is not None:
                item[k] = s[k]
        out["syscalls"].append(item)
    return out


def _rlimits(ulimits) -> list:
    out = []
    for u in ulimits or ():
        out.append({"type": "RLIMIT_" + u["Name"].upper(), "soft": u["Soft"], "hard": u["Hard"]})
    return out


def resources(hc: dict) -> dict:
    """HostConfig limits -> linux.resources (Docker's conversions: NanoCpus to quota over a 100 ms
    period; MemorySwap 0 with a memory limit means twice the memory; -1 means unlimited)."""
    r = {}
    mem = {}
    if hc.get("Memory"):
        mem["limit"] = hc["Memory"]
        swap = hc.get("MemorySwap") or 0
        mem["swap"] = -1 if swap == -1 else (swap or 2 * hc["Memory"])
    if hc.get("MemoryReservation"):
        mem["reservation"] = hc["MemoryReservation"]
    if hc.get("OomKillDisable"):
        mem["disableOOMKiller"] = True
    if mem:
        r["memory"] = mem
    cpu = {}
    if hc.get("NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = hc["NanoCpus"] * 100000 // 1_000_000_000
    if hc.get("CpuShares"):
        cpu["shares"] = hc["CpuShares"]
    if hc.get("CpuQuota"):
        cpu["quota"] = hc["CpuQuota"]
    if hc.get("CpuPeriod"):
        cpu["period"] = hc["CpuPeriod"]
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if cpu:
        r["cpu"] = cpu
    if hc.get("PidsLimit") and hc["PidsLimit"] > 0:
        r["pids"] = {"limit": hc["PidsLimit"]}
    return r


def _security_opts(hc: dict) -> tuple[str | None, bool]:
    """-> (seccomp: None=default, "unconfined", or a JSON profile text; no_new_privileges)."""
    seccomp, nnp = None, False
    for opt in hc.get("SecurityOpt") or ():
        key, sep, val = opt.partition("=") if "=" in opt else opt.partition(":")
        if key == "seccomp":
            seccomp = val
        elif key == "no-new-privileges":
            nnp = val in ("", "true")
        elif key in ("apparmor", "label", "systempaths"):
            continue  # no LSM here; accepted so that compose files keep working
        else:
            raise errdefs.InvalidArgument(f"invalid --security-opt: {opt!r}")
    return seccomp, nnp


def build(c, spec_mod, user: dict, hostname: str, files: dict, volumes: dict, netns_path: str | None = None) -> dict:
    """The OCI config for container ``c``.

    ``files`` maps /etc/hostname, /etc/hosts, /etc/resolv.conf to their paths in the bundle;
    ``volumes`` maps volume names to their host _data dirs (already created).
    """
    cfg, hc = c.config, c.host_config
    args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    init = None
    if hc.get("Init"):
        init = find_init()
        if not init:
            raise errdefs.Unavailable("--init: no tini found on the host (install Debian's 'tini')")
        args = [INIT_PATH, "--"] + args
    spec = spec_mod.default_spec(args=args, env=process_env(cfg, hostname, user["home"]),
                                 cwd=cfg.get("WorkingDir") or "/", terminal=bool(cfg.get("Tty")),
                                 hostname=hostname, rootfs=c.rootfs)
    proc = spec["process"]
    proc["user"] = {"uid": user["uid"], "gid": user["gid"]}
    proc["user"]["additionalGids"] = user["additionalGids"]
    if hc.get("Ulimits"):
        names = {u["type"] for u in _rlimits(hc["Ulimits"])}
        proc["rlimits"] = [r for r in proc.get("rlimits", []) if r["type"] not in names] + _rlimits(hc["Ulimits"])
    spec["root"] = {"path": c.rootfs, "readonly": bool(hc.get("ReadonlyRootfs"))}
    if cfg.get("Domainname"):
        spec["domainname"] = cfg["Domainname"]

    privileged = bool(hc.get("Privileged"))
    spec = spec_mod.with_capabilities(spec, add=hc.get("CapAdd") or (), drop=hc.get("CapDrop") or (),
                                      privileged=privileged) or spec
    linux = spec.setdefault("linux", {})
    seccomp, nnp = _security_opts(hc)
    if nnp:
        proc["noNewPrivileges"] = True
    if privileged or seccomp == "unconfined":
        linux.pop("seccomp", None)
    elif seccomp:
        try:
            linux["seccomp"] = seccomp_from_docker(json.loads(seccomp))
        except (ValueError, KeyError, TypeError) as e:
            raise errdefs.InvalidArgument(f"decoding seccomp profile failed: {e}") from e
    elif "seccomp" not in linux:
        profile = spec_mod.default_seccomp_profile()
        if profile:
            linux["seccomp"] = profile
    if privileged:
        linux.pop("maskedPaths", None)
        linux.pop("readonlyPaths", None)

    # Namespaces: always our own pid/ipc/uts/mount/cgroup; a netns unless host networking: a new
    # one (the engine plumbs it between create and start) or another container's (``netns_path``).
    ns = ["pid", "ipc", "uts", "mount", "cgroup"]
    if hc.get("PidMode") == "host":
        ns.remove("pid")
    if hc.get("IpcMode") == "host":
        ns.remove("ipc")
    if hc.get("NetworkMode") != "host":
        ns.append("network")
    linux["namespaces"] = [{"type": t, "path": netns_path} if t == "network" and netns_path else {"type": t}
                           for t in ns]
    res = linux.setdefault("resources", {})
    res.update(resources(hc))
    linux["cgroupsPath"] = f"/dockyard/{c.id}"
    if hc.get("Sysctls"):
        linux["sysctl"] = dict(hc["Sysctls"])

    mounts = spec.setdefault("mounts", [])
    if hc.get("ShmSize"):
        for m in mounts:
            if m["destination"] == "/dev/shm":
                m["options"] = [o for o in m.get("options", []) if not o.startswith("size=")] + [f"size={hc['ShmSize']}"]
    user_dests = {m["Destination"].rstrip("/") for m in c.mount_plan}
    mounts[:] = [m for m in mounts if m["destination"] not in user_dests]  # a user mount replaces a default
    ro_files = bool(hc.get("ReadonlyRootfs"))
    for dest, src in files.items():
        mounts.append({"destination": dest, "type": "bind", "source": src,
                       "options": ["rbind", "rprivate"] + (["ro"] if ro_files else [])})
    if init:
        mounts.append({"destination": INIT_PATH, "type": "bind", "source": init,
                       "options": ["bind", "ro", "nosuid", "nodev"]})
    for m in c.mount_plan:
        ro = [] if m["RW"] else ["ro"]
        if m["Type"] == "bind":
            mounts.append({"destination": m["Destination"], "type": "bind", "source": m["Source"],
                           "options": ["rbind", m.get("Propagation") or "rprivate"] + ro})
        elif m["Type"] == "volume":
            mounts.append({"destination": m["Destination"], "type": "bind", "source": volumes[m["Name"]],
                           "options": ["rbind", "rprivate"] + ro})
        elif m["Type"] == "tmpfs":
            opts = m.get("TmpfsOptions") or []
            base = ["nosuid", "nodev", "noexec"] if not any(o in ("exec", "dev", "suid") for o in opts) else []
            mounts.append({"destination": m["Destination"], "type": "tmpfs", "source": "tmpfs",
                           "options": base + opts + ro})
    # Parents before children (Docker sorts by depth): a volume on /etc must not hide /etc/hosts.
    mounts.sort(key=lambda m: len([p for p in m["destination"].split("/") if p]))
    return spec


def stop_signal(config: dict) -> int:
    return parse_signal(config.get("StopSignal") or "SIGTERM")


def parse_signal(sig) -> int:
    """'KILL', 'SIGKILL', '9', 9 -> 9; InvalidArgument otherwise (Docker's message)."""
    if isinstance(sig, int):
        num = sig
    else:
        s = str(sig).strip().upper()
        if s.isdigit():
            num = int(s)
        else:
            name = s if s.startswith("SIG") else "SIG" + s
            num = getattr(_signal.Signals, name, None) if name in _signal.Signals.__members__ else None
            if num is None:
                raise errdefs.InvalidArgument(f"Invalid signal: {sig}")
            num = int(num)
    if not 0 < num < 65:
        raise errdefs.InvalidArgument(f"Invalid signal: {sig}")
    return num
