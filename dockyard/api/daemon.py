"""The daemon process: lock the data root, open the engine, serve the API until SIGTERM/SIGINT.

One daemon per data root (an flock on ``<data-root>/dockyard.lock``, released by the kernel if we
die). Shutdown closes the listener and the engine; containers keep running under their conmon and
are re-adopted by the next daemon. Logs go to stderr.
"""

import argparse
import asyncio
import concurrent.futures
import fcntl
import logging
import os
import signal
import socket
import stat
import sys

from dockyard import errdefs

log = logging.getLogger("dockyard.daemon")


def _socket_path(host: str) -> str:
    if not host.startswith("unix://"):
        raise errdefs.InvalidArgument(f"unsupported host {host!r}: only unix:///path sockets are served")
    path = host[len("unix://"):]
    if not path.startswith("/"):
        raise errdefs.InvalidArgument(f"socket path must be absolute: {host!r}")
    return path


def _lock_data_root(data_root: str):
    os.makedirs(data_root, mode=0o711, exist_ok=True)
    fd = os.open(os.path.join(data_root, "dockyard.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise errdefs.Conflict(f"another dockyard daemon is using the data root {data_root}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _remove_stale_socket(path: str):
    """Remove a socket nobody listens on; refuse if something answers or it is not a socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise errdefs.Conflict(f"{path} exists and is not a socket")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        return
    finally:
        s.close()
    raise errdefs.Conflict(f"another daemon is listening on {path}")


def parse_address_pool(text: str) -> tuple[str, int]:
    """``base=10.10.0.0/16,size=24`` (dockerd's --default-address-pool) -> ("10.10.0.0/16", 24)."""
    import ipaddress

    kv = dict(p.partition("=")[::2] for p in text.split(",") if p)
    try:
        base = ipaddress.ip_network(kv["base"], strict=False)
        size = int(kv.get("size") or base.prefixlen)
    except (KeyError, ValueError) as e:
        raise errdefs.InvalidArgument(f"invalid default address pool {text!r}: expected base=CIDR,size=N") from e
    if not base.prefixlen <= size <= 30:
        raise errdefs.InvalidArgument(f"invalid default address pool {text!r}: size must be in /{base.prefixlen}../30")
    return str(base), size


async def serve(data_root: str, exec_root: str, host: str, insecure_registries=(), bip=None, address_pools=()):
    from dockyard.api import build_router
    from dockyard.api.server import Server
    from dockyard.engine import Engine

    # Tar streams (load, import, save) each hold a worker thread for their whole transfer; the
    # default pool (cpu count + 4) would let a few of them starve every other blocking call.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="dockyard"))
    path = _socket_path(host)
    lock_fd = _lock_data_root(data_root)
    eng = None
    server = None
    try:
        os.makedirs(exec_root, mode=0o711, exist_ok=True)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _remove_stale_socket(path)
        pools = [parse_address_pool(p) for p in address_pools or ()] or None
        eng = await Engine.open(data_root, exec_root, network=True, bip=bip or None, default_pools=pools)
        router = build_router(eng)
        # Read by the pull/push/auth handlers: registries allowed plain HTTP and unverified TLS.
        router.insecure_registries = tuple(insecure_registries)
        server = Server(router)
        await server.start_unix(path)
        os.chmod(path, 0o660)
        log.info("API listening on %s (data root %s, exec root %s)", path, data_root, exec_root)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down; containers keep running")
    finally:
        if server:
            await server.close()
            try:
                os.unlink(path)  # only ours: a socket we found in use belongs to someone else
            except OSError:
                pass
        if eng:
            await eng.close()
        os.close(lock_fd)


def run(data_root="/var/lib/dockyard", exec_root="/run/dockyard", host="unix:///run/dockyard.sock",
        insecure_registries=(), bip=None, address_pools=()) -> int:
    """The daemon main; returns the process exit code (errors are one line on stderr)."""
    from dockyard.api.server import install_logging

    install_logging()
    try:
        asyncio.run(serve(os.path.abspath(data_root), os.path.abspath(exec_root), host, insecure_registries,
                          bip, address_pools))
    except errdefs.DockyardError as e:
        print(f"dockyard daemon: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    except Exception as e:  # noqa: BLE001 - a bug or a broken install: say so once, keep the trace
        logging.getLogger("dockyard.daemon").exception("daemon failed")
        print(f"dockyard daemon: failed: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dockyard.api.daemon", description="dockyard daemon")
    p.add_argument("--data-root", default="/var/lib/dockyard")
    p.add_argument("--exec-root", default="/run/dockyard")
    p.add_argument("-H", "--host", default="unix:///run/dockyard.sock")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="registry that may be reached over plain HTTP or unverified TLS (repeatable)")
    p.add_argument("--bip", help="address/prefix of the default bridge (e.g. 10.99.0.1/24)")
    p.add_argument("--default-address-pool", action="append", default=[], metavar="base=CIDR,size=N")
    a = p.parse_args(argv)
    return run(a.data_root, a.exec_root, a.host, a.insecure_registry, a.bip, a.default_address_pool)


if __name__ == "__main__":
    sys.exit(main())
