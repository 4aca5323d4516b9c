"""``docker import --change`` / ``commit --change``: Dockerfile-style lines applied to an image config.

Pure: a list of lines and a config dict in, a new config dict out, or InvalidArgument naming the bad
line. Only the instructions Docker accepts there: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD,
STOPSIGNAL, USER, VOLUME, WORKDIR.
"""

import copy
import json
import shlex

from dockyard.errdefs import InvalidArgument


def _json_or_shell(arg: str) -> list[str]:
    """Exec form (JSON array of strings) or shell form (wrapped in /bin/sh -c), as Dockerfiles do."""
    if arg.startswith("["):
        try:
            v = json.loads(arg)
        except ValueError:
            v = None
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return v
    return ["/bin/sh", "-c", arg]


def _pairs(arg: str, what: str, line: str) -> dict[str, str]:
    """``K=V K2="v 2"`` or the legacy single ``K V`` form."""
    words = shlex.split(arg)
    if words and "=" not in words[0]:
        key, _, value = arg.partition(" ")
        return {key: value.strip()}
    out = {}
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"{what} names can not be blank and need a value: {line!r}")
        out[key] = value
    return out


def apply_changes(config: dict, changes) -> dict:
    """Return a copy of the Docker image ``config`` (the inner ``config`` object) with changes applied."""
    cfg = copy.deepcopy(config)
    for line in changes or ():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, arg = line.partition(" ")
        instr, arg = instr.upper(), arg.strip()
        try:
            if instr == "CMD":
                cfg["Cmd"] = _json_or_shell(arg)
            elif instr == "ENTRYPOINT":
                cfg["Entrypoint"] = _json_or_shell(arg)
            elif instr == "ENV":
                env = {e.partition("=")[0]: e for e in cfg.get("Env") or []}
                for k, v in _pairs(arg, "ENV", line).items():
                    env[k] = f"{k}={v}"
                cfg["Env"] = list(env.values())
            elif instr == "LABEL":
                cfg["Labels"] = {**(cfg.get("Labels") or {}), **_pairs(arg, "LABEL", line)}
            elif instr == "EXPOSE":
                ports = dict(cfg.get("ExposedPorts") or {})
                for p in arg.split():
                    num, _, proto = p.partition("/")
                    if not num.replace("-", "").isdigit() or proto not in ("", "tcp", "udp", "sctp"):
                        raise InvalidArgument(f"invalid port {p!r} in {line!r}")
                    ports[f"{num}/{proto or 'tcp'}"] = {}
                cfg["ExposedPorts"] = ports
            elif instr == "VOLUME":
                vols = dict(cfg.get("Volumes") or {})
                for v in (json.loads(arg) if arg.startswith("[") else arg.split()):
                    vols[v] = {}
                cfg["Volumes"] = vols
            elif instr in ("USER", "WORKDIR", "STOPSIGNAL"):
                if not arg:
                    raise InvalidArgument(f"{instr} requires exactly one argument: {line!r}")
                cfg[{"USER": "User", "WORKDIR": "WorkingDir", "STOPSIGNAL": "StopSignal"}[instr]] = arg
            elif instr == "ONBUILD":
                cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), arg]
            else:
                raise InvalidArgument(f"{instr} is not a valid change command")
        except ValueError as e:  # shlex: unbalanced quotes
            raise InvalidArgument(f"invalid change {line!r}: {e}") from e
    return cfg
