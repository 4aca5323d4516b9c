"""Logging drivers as plans: what conmon writes, what the keeper keeps, what goes to syslog.

Every driver that keeps anything has conmon write the same k8s-file log (``runtime/logfile.py``)
with its size cap (``--log-size-max``), and the engine's keeper (``LogRotator`` in logs.py) keeps
older generations:

* ``json-file``: Docker's defaults (no cap, one file); ``max-size``/``max-file`` rotate.
* ``local``: Docker's defaults max-size 20m, max-file 5, compress true (rotated files gzipped).
  The files are our k8s-file records, not Docker's protobuf frames: only dockyard reads them.
* ``none``: conmon is told to write nothing; ``logs`` refuses; options are ignored, as by Docker.
* ``syslog``: the same local files are the spool and, as with Docker's dual logging, the cache
  ``logs`` reads (``cache-max-size``/``cache-max-file``/``cache-compress``, Docker's 20m/5/true);
  one daemon task (``SyslogShipper`` in logs.py) ships new lines. No process per container.

``mode=non-blocking`` with ``max-buffer-size`` (default 1m): the container never waits on a
driver here in either mode (conmon writes to a file, the daemon ships from it); for syslog, a
shipper more than the buffer behind skips ahead and counts the lines it dropped; in blocking mode it
waits for the receiver, and lines are lost only once the cache rotated past them. ``validate`` and
the formatting here are pure; ``labels``/``env`` options are accepted and have no effect (our
records carry no attributes).
"""

import re
import socket
import time
from dataclasses import dataclass

from dockyard import errdefs
from dockyard.engine.config import parse_size

_GENERIC = ("mode", "max-buffer-size")
_JSON_OPTS = ("max-size", "max-file", "compress", "labels", "labels-regex", "env", "env-regex", "tag")
_LOCAL_OPTS = ("max-size", "max-file", "compress")
_CACHE_OPTS = ("cache-disabled", "cache-max-size", "cache-max-file", "cache-compress")
_SYSLOG_OPTS = ("syslog-address", "syslog-facility", "syslog-tls-ca-cert", "syslog-tls-cert", "syslog-tls-key",
                "syslog-tls-skip-verify", "tag", "syslog-format", "labels", "labels-regex", "env", "env-regex")
DRIVERS = ("json-file", "local", "none", "syslog")

FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
              "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, **{f"local{i}": 16 + i for i in range(8)}}
SYSLOG_FORMATS = ("", "rfc3164", "rfc5424", "rfc5424micro")
DEFAULT_BUFFER = 1 << 20  # Docker's max-buffer-size default


@dataclass(frozen=True)
class LogPlan:
    driver: str
    size_max: int | None  # conmon's cap on the current file (None: unbounded)
    keep: int  # generations kept on disk, the current one included
    compress: bool  # gzip rotated generations
    readable: bool  # `docker logs` works
    non_blocking: bool = False
    buffer: int = DEFAULT_BUFFER
    syslog: dict | None = None  # {"address": (scheme, target), "facility": int, "tag": str, "format": str}


def _bool(key: str, v: str) -> bool:
    if v.lower() in ("1", "t", "true"):
        return True
    if v.lower() in ("0", "f", "false"):
        return False
    raise errdefs.InvalidArgument(f"invalid value for {key}: {v}: must be a boolean")


def _files(key: str, v: str | None, default: int) -> int:
    if v in (None, ""):
        return default
    if not v.isdigit() or int(v) < 1:
        raise errdefs.InvalidArgument(f"invalid value for {key}: {v}")
    return int(v)


def validate(driver: str, opts: dict) -> LogPlan:
    """Docker's checks and wording for ``--log-driver``/``--log-opt``; the plan for valid ones."""
    if driver == "none":  # Docker ignores the options of the none driver
        return LogPlan("none", None, 0, False, False)
    for key, value in opts.items():
        if not isinstance(value, str):
            raise errdefs.InvalidArgument(f"invalid log opt '{key}': expected a string")
    mode = opts.get("mode", "")
    if mode not in ("", "blocking", "non-blocking"):
        raise errdefs.InvalidArgument(f"logger: logging mode not supported: {mode}")
    if "max-buffer-size" in opts and mode != "non-blocking":
        raise errdefs.InvalidArgument("logger: max-buffer-size option is only supported with 'mode=non-blocking'")
    try:
        buffer = parse_size(opts.get("max-buffer-size")) or DEFAULT_BUFFER
    except errdefs.InvalidArgument as e:
        raise errdefs.InvalidArgument(f"error parsing option max-buffer-size: {e}") from e
    if driver not in DRIVERS:
        raise errdefs.InvalidArgument(f"logger: no log driver named '{driver}' is registered")
    own = {k: v for k, v in opts.items() if k not in _GENERIC}
    common = dict(non_blocking=mode == "non-blocking", buffer=buffer)
    if driver == "json-file":
        for key in own:
            if key not in _JSON_OPTS:
                raise errdefs.InvalidArgument(f"unknown log opt '{key}' for json-file log driver")
        size = parse_size(own.get("max-size"))
        files = _files("max-file", own.get("max-file"), 1)
        if files > 1 and not size:
            raise errdefs.InvalidArgument("max-file cannot be set without max-size")
        compress = _bool("compress", own["compress"]) if own.get("compress") else False
        if compress and files <= 1:
            raise errdefs.InvalidArgument("compress cannot be true when max-file is less than 2")
        return LogPlan("json-file", size, files if size else 1, compress, True, **common)
    if driver == "local":
        for key in own:
            if key not in _LOCAL_OPTS:
                raise errdefs.InvalidArgument(f"unknown log opt '{key}' for log driver local")
        size = parse_size(own.get("max-size")) if own.get("max-size") else 20 << 20
        if not size:
            raise errdefs.InvalidArgument("max-size must be a positive number")
        compress = _bool("compress", own["compress"]) if own.get("compress") else True
        return LogPlan("local", size, _files("max-file", own.get("max-file"), 5), compress, True, **common)
    # syslog
    for key in own:
        if key not in _SYSLOG_OPTS and key not in _CACHE_OPTS:
            raise errdefs.InvalidArgument(f"unknown log opt '{key}' for syslog log driver")
    if any(k.startswith("syslog-tls-") for k in own):
        raise errdefs.InvalidArgument("syslog-tls options are not supported by dockyard: use tcp, udp or unix")
    fmt = own.get("syslog-format", "")
    if fmt not in SYSLOG_FORMATS:
        raise errdefs.InvalidArgument(f"Invalid syslog format: {fmt}")
    fac = own.get("syslog-facility", "daemon")
    if fac.isdigit() and int(fac) <= 23:
        facility = int(fac)
    elif fac in FACILITIES:
        facility = FACILITIES[fac]
    else:
        raise errdefs.InvalidArgument("invalid syslog facility")
    tag = own.get("tag", "{{.ID}}")
    check_tag(tag)
    cached = not _bool("cache-disabled", own["cache-disabled"]) if own.get("cache-disabled") else True
    size = parse_size(own.get("cache-max-size")) if own.get("cache-max-size") else 20 << 20
    compress = _bool("cache-compress", own["cache-compress"]) if own.get("cache-compress") else True
    keep = _files("cache-max-file", own.get("cache-max-file"), 5)
    if not cached:  # still a spool to ship from, just big enough for the buffer
        size, keep, compress = max(buffer, 1 << 20), 2, False
    return LogPlan("syslog", size, keep, compress, cached, syslog={
        "address": parse_address(own.get("syslog-address", "")), "facility": facility, "tag": tag,
        "format": fmt}, **common)


def plan_for(host_config: dict) -> LogPlan:
    lc = host_config.get("LogConfig") or {}
    return validate(lc.get("Type") or "json-file", lc.get("Config") or {})


def parse_address(addr: str) -> tuple[str, object]:
    """syslog-address -> (scheme, target): ("udp"|"tcp", (host, port)) or ("unix"|"unixgram", path).
    Empty: the local syslog socket, as Docker (/dev/log)."""
    if not addr:
        return ("unixgram", "/dev/log")
    m = re.match(r"^([a-z+]+)://(.*)$", addr)
    if not m:
        raise errdefs.InvalidArgument(f"unsupported scheme: '{addr.split(':', 1)[0] if ':' in addr else ''}'")
    scheme, rest = m.groups()
    if scheme in ("unix", "unixgram"):
        if not rest.startswith("/"):
            raise errdefs.InvalidArgument(f"syslog-address {addr}: needs an absolute socket path")
        return (scheme, rest)
    if scheme in ("udp", "tcp"):
        hm = re.match(r"^\[?([^\]/]*?)\]?(?::(\d+))?$", rest)
        if not hm or not hm.group(1):
            raise errdefs.InvalidArgument(f"syslog-address {addr}: expected {scheme}://host:port")
        return (scheme, (hm.group(1), int(hm.group(2) or 514)))
    raise errdefs.InvalidArgument(f"unsupported scheme: '{scheme}'")


_TAG_FIELDS = ("ID", "FullID", "Name", "ImageName", "ImageID", "ImageFullID", "DaemonName")
_TAG_RE = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


def check_tag(tag: str):
    for name in _TAG_RE.findall(tag):
        if name not in _TAG_FIELDS:
            raise errdefs.InvalidArgument(
                f'template: log-tag:1: executing "log-tag" at <.{name}>: can\'t evaluate field {name}')
    if "{{" in _TAG_RE.sub("", tag):
        raise errdefs.InvalidArgument(f"template: log-tag: unsupported template {tag!r}: "
                                      f"use {{{{.ID}}}} {{{{.FullID}}}} {{{{.Name}}}} {{{{.ImageName}}}}")


def render_tag(tag: str, c) -> str:
    """Docker's log tag template for container ``c`` (the fields dockyard knows)."""
    image_id = (c.image_id or "").removeprefix("sha256:")
    values = {"ID": c.id[:12], "FullID": c.id, "Name": c.name.lstrip("/"), "ImageName": c.image,
              "ImageID": image_id[:12], "ImageFullID": image_id, "DaemonName": "docker"}
    return _TAG_RE.sub(lambda m: values[m.group(1)], tag)


def syslog_message(fmt: str, facility: int, stream: str, tag: str, line: bytes, time_ns: int,
                   hostname: str, pid: int) -> bytes:
    """One line as Docker's syslog driver formats it (stdout: info, stderr: err), newline-ended.
    The time is the line's own, so lines shipped late (after a daemon restart) keep theirs."""
    pri = facility * 8 + (6 if stream == "stdout" else 3)
    msg = line[:-1] if line.endswith(b"\n") else line
    secs = time_ns // 1_000_000_000
    if fmt in ("rfc5424", "rfc5424micro"):
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
        if fmt == "rfc5424micro":
            micro = f"{(time_ns // 1000) % 1_000_000:06d}".rstrip("0")  # Go's .999999 trims zeros
            t += "." + micro if micro else ""
        head = f"<{pri}>1 {t}Z {hostname} {tag} {pid} {tag} - "
    else:
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime(secs))
        if stamp[4] == "0":
            stamp = stamp[:4] + " " + stamp[5:]  # Go's time.Stamp: "Jan _2 15:04:05"
        # Docker's default is the local-socket form, without a hostname, whatever the transport.
        head = f"<{pri}>{stamp} {hostname} {tag}[{pid}]: " if fmt == "rfc3164" else f"<{pri}>{stamp} {tag}[{pid}]: "
    return head.encode() + msg + b"\n"


def hostname() -> str:
    return socket.gethostname()
