"""Replay Dockerfiles recorded against a real Docker daemon (fixtures/docker_recorded.json).

For each case we compute the image config the way a builder would from our AST and scopes
(``stage_scopes`` + ``Instruction.expanded``) and compare it with what Docker produced; for the
cases Docker rejected, we must reject too (our messages differ on purpose: they name the line).
"""

import json
import posixpath
from pathlib import Path

import pytest

from dockyard.build import dockerfile as d

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "docker_recorded.json").read_text())
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DURATIONS = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod"}


def scratch_config():
    # Docker's builder gives a FROM scratch image the default PATH
    return {"Env": [DEFAULT_PATH], "Labels": None, "WorkingDir": "", "User": "", "ExposedPorts": None,
            "Volumes": None, "StopSignal": None, "Cmd": None, "Entrypoint": None, "Shell": None,
            "Healthcheck": None, "OnBuild": None}


def apply(config, inst, env):
    """A minimal builder: what each instruction does to the image config."""
    args = inst.expanded(env)
    if inst.cmd == "ENV":
        for key, value in zip(args[::2], args[1::2]):
            config["Env"] = [e for e in config["Env"] if e.split("=", 1)[0] != key] + [f"{key}={value}"]
    elif inst.cmd == "LABEL":
        config["Labels"] = {**(config["Labels"] or {}), **dict(zip(args[::2], args[1::2]))}
    elif inst.cmd == "WORKDIR":
        config["WorkingDir"] = posixpath.normpath(posixpath.join("/", config["WorkingDir"], args[0]))
    elif inst.cmd in ("USER", "STOPSIGNAL"):
        config[{"USER": "User", "STOPSIGNAL": "StopSignal"}[inst.cmd]] = args[0]
    elif inst.cmd == "EXPOSE":
        config["ExposedPorts"] = {**(config["ExposedPorts"] or {}),
                                  **{p if "/" in p else p + "/tcp": {} for p in args}}
    elif inst.cmd == "VOLUME":
        config["Volumes"] = {**(config["Volumes"] or {}), **{v: {} for v in args}}
    elif inst.cmd in ("CMD", "ENTRYPOINT"):
        value = args if inst.json else [*(config["Shell"] or ["/bin/sh", "-c"]), *args]
        config["Cmd" if inst.cmd == "CMD" else "Entrypoint"] = value or None
    elif inst.cmd == "SHELL":
        config["Shell"] = args
    elif inst.cmd == "HEALTHCHECK":
        if args == ["NONE"]:
            config["Healthcheck"] = {"Test": ["NONE"]}
        else:
            test = ["CMD", *args[1:]] if inst.json else ["CMD-SHELL", args[1]]
            check = {"Test": test}
            for flag, key in DURATIONS.items():
                if flag in inst.flags:
                    check[key] = d.parse_duration(inst.flags[flag])
            if "retries" in inst.flags:
                check["Retries"] = int(inst.flags["retries"])
            config["Healthcheck"] = check
    elif inst.cmd == "ONBUILD":
        config["OnBuild"] = [*(config["OnBuild"] or []), args[0]]


def build(text, build_args):
    df = d.parse(text)
    target = d.validate_stages(df)
    meta = d.global_scope(df, build_args)
    configs = {}
    for stage in df.stages[:target.index + 1]:
        (base,) = stage.from_instruction.expanded(meta)[:1]
        index = d.resolve_stage_ref(df, base)
        config = json.loads(json.dumps(configs[index])) if index is not None else scratch_config()
        base_env = dict(e.split("=", 1) for e in config["Env"])
        for inst, env in d.stage_scopes(stage, base_env, meta, build_args):
            apply(config, inst, env)
        configs[stage.index] = config
    return configs[target.index]


@pytest.mark.parametrize("case", RECORDED["cases"], ids=lambda c: c["name"])
def test_recorded(case):
    if "error" in case:
        with pytest.raises(d.DockerfileError):
            build(case["dockerfile"], case["build_args"])
    else:
        assert build(case["dockerfile"], case["build_args"]) == case["config"]
