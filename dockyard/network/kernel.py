"""The executor: applies ``plan.Op`` lists with netlink (pyroute2) and rulesets with ``nft``.

This is the only module that changes the kernel. It never forks the daemon: netlink work inside a
container's netns runs in a short-lived thread that setns(2)s itself there (network namespaces are
per thread) and exits, so no other thread ever sees a foreign namespace.
"""

import ctypes
import errno
import itertools
import os
import subprocess
import threading

from dockyard.errdefs import Internal, NotFound, Unavailable

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


def _iproute():
    from pyroute2 import IPRoute  # heavy import, only when the kernel is touched

    return IPRoute()


def _netlink_errors() -> tuple:
    # pyroute2's NetlinkError (errno in args[0]) is not an OSError (0.9: it derives from Exception).
    from pyroute2.netlink.exceptions import NetlinkError

    return (OSError, NetlinkError)


def in_netns(path, fn):
    """Run ``fn()`` in a fresh thread that lives in the network namespace at ``path``."""
    if path is None:
        return fn()
    result = {}

    def body():
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            result["err"] = NotFound(f"network namespace {path} does not exist: {e.strerror}")
            return
        try:
            if _libc.setns(fd, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                result["err"] = Internal(f"setns({path}): {os.strerror(err)}")
                return
            result["val"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            result["err"] = e
        finally:
            os.close(fd)

    t = threading.Thread(target=body, name="netns")
    t.start()
    t.join()
    if "err" in result:
        raise result["err"]
    return result.get("val")


def _index(ipr, name):
    idx = ipr.link_lookup(ifname=name)
    if not idx:
        raise NotFound(f"no such network interface: {name}")
    return idx[0]


def _do(ipr, op):
    a = op.args
    if op.kind == "sysctl":
        with open(a["path"], "w") as f:
            f.write(a["value"])
    elif op.kind == "bridge":
        if not ipr.link_lookup(ifname=a["name"]):
            ipr.link("add", ifname=a["name"], kind="bridge")
    elif op.kind == "addr":
        idx = _index(ipr, a["ifname"])
        have = {(x.get("IFA_ADDRESS"), x["prefixlen"]) for x in ipr.get_addr(index=idx, family=2)}
        if (a["address"], a["prefixlen"]) not in have:
            ipr.addr("add", index=idx, address=a["address"], prefixlen=a["prefixlen"])
    elif op.kind == "up":
        extra = {"mtu": a["mtu"]} if a.get("mtu") else {}
        ipr.link("set", index=_index(ipr, a["ifname"]), state="up", **extra)
    elif op.kind == "route":
        ipr.route("replace", dst="0.0.0.0/0", gateway=a["gateway"])
    elif op.kind == "veth":
        fd = os.open(a["peer_netns"], os.O_RDONLY)
        try:
            peer = {"ifname": a["peer"], "net_ns_fd": fd}
            if a.get("mac"):
                peer["address"] = a["mac"]
            ipr.link("add", ifname=a["host"], kind="veth", peer=peer)
        finally:
            os.close(fd)
        ipr.link("set", index=_index(ipr, a["host"]), master=_index(ipr, a["master"]))
    elif op.kind == "master":
        ipr.link("set", index=_index(ipr, a["name"]), master=_index(ipr, a["master"]))
    elif op.kind == "del_link":
        idx = ipr.link_lookup(ifname=a["name"])
        if idx:
            try:
                ipr.link("del", index=idx[0])
            except _netlink_errors() as e:
                # A veth goes with its peer: when the container's netns dies between the
                # lookup and the delete, the link is already gone. That is the goal.
                if _code(e) != errno.ENODEV:
                    raise
    else:
        raise Internal(f"unknown plan op {op.kind}")


def _code(e):
    return e.args[0] if e.args and isinstance(e.args[0], int) else e.errno


def _run(batch):
    """Ops of one namespace on one netlink socket: opening one costs about as much as an op."""
    with _iproute() as ipr:
        for op in batch:
            try:
                _do(ipr, op)
            except _netlink_errors() as e:
                raise Internal(f"network: {op.kind} {_describe(op)}: {os.strerror(_code(e) or errno.EIO)}") from e


def apply(ops):
    """Apply ops in order, each run of consecutive ops in one netns in one thread (in_netns);
    netlink errors become one clear errdefs line."""
    for netns, batch in itertools.groupby(ops, key=lambda op: op.args.get("netns")):
        batch = list(batch)
        in_netns(netns, lambda: _run(batch))


def _describe(op):
    return " ".join(f"{k}={v}" for k, v in op.args.items() if k != "netns")


def delete_link(name):
    apply([_del(name)])


def _del(name):
    from .plan import Op

    return Op("del_link", {"name": name})


def links() -> set:
    with _iproute() as ipr:
        return {l.get("ifname") for l in ipr.get_links()}


def link_exists(name) -> bool:
    # sysfs lists the links of the daemon's own netns; a stat instead of a netlink dump.
    return os.path.exists(f"/sys/class/net/{name}")


def link_master(name):
    """Name of the bridge ``name`` is enslaved to, or None."""
    with _iproute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            return None
        master = ipr.get_links(idx[0])[0].get("IFLA_MASTER")
        if not master:
            return None
        return ipr.get_links(master)[0].get("ifname")


def apply_nft(text: str):
    """Load a ruleset in one ``nft -f`` transaction: all of it or nothing."""
    try:
        p = subprocess.run(["nft", "-f", "-"], input=text, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as e:
        raise Unavailable("nft is not installed (Debian package nftables)") from e
    if p.returncode != 0:
        detail = p.stderr.strip().splitlines()[0] if p.stderr.strip() else f"exit {p.returncode}"
        raise Internal(f"nft rejected the ruleset: {detail}")


def nft_tables() -> set:
    p = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
    return {tuple(line.split()[1:3]) for line in p.stdout.splitlines() if line.startswith("table ")}
