"""The `dockyard` command's entry point: `exec` and `stats` parsed by hand, the rest by click.

click, and the standard modules it loads, cost ~20 ms of every command: a third of a
`dockyard exec CTR true`. The commands people run in loops (and the benchmarks time) are parsed
here without it when their command line uses only the flags below, in the spellings click
accepts (``-it``, ``-eK=V``, ``--env=K=V``, ``-H X`` first). Anything else (another flag,
``--help``, ``--``, a missing argument) goes to click unchanged, which then answers as always.
tests/cli/test_entry.py checks that this parser and click's agree on every form it takes.
"""

import os
import sys

# name -> (dest, takes a value, repeatable); the options of cli/containers.py's click commands.
EXEC_FLAGS = {
    "-d": ("detach", False, False), "--detach": ("detach", False, False),
    "-i": ("interactive", False, False), "--interactive": ("interactive", False, False),
    "-t": ("tty", False, False), "--tty": ("tty", False, False),
    "-e": ("env", True, True), "--env": ("env", True, True),
    "-u": ("user", True, False), "--user": ("user", True, False),
    "-w": ("workdir", True, False), "--workdir": ("workdir", True, False),
    "--privileged": ("privileged", False, False),
    "--detach-keys": ("detach_keys", True, False),
}
STATS_FLAGS = {
    "-a": ("all_", False, False), "--all": ("all_", False, False),
    "--no-stream": ("no_stream", False, False),
    "--no-trunc": ("no_trunc", False, False),
    "--format": ("fmt", True, False),
}


def parse_options(args: list, flags: dict, interspersed: bool):
    """-> (options, positional arguments), or None for anything this parser does not take.
    Without ``interspersed`` the first positional argument ends the options (click's
    allow_interspersed_args=False: the rest is the command)."""
    opts, pos = {}, []
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "-" or not a.startswith("-") or (pos and not interspersed):
            pos.append(a)
            if not interspersed:
                pos += args[i:]
                break
            continue
        if a == "--":
            return None
        if a.startswith("--"):
            name, eq, value = a.partition("=")
            spec = flags.get(name)
            if spec is None or (eq and not spec[1]):
                return None
            if spec[1] and not eq:
                if i >= len(args):
                    return None
                value = args[i]
                i += 1
            _set(opts, spec, value if spec[1] else True)
            continue
        # Short flags, possibly several in one word ("-it"); one that takes a value takes the
        # rest of the word, or else the next argument ("-eK=V", "-e K=V").
        j = 1
        while j < len(a):
            spec = flags.get("-" + a[j])
            if spec is None:
                return None
            if not spec[1]:
                _set(opts, spec, True)
                j += 1
                continue
            value = a[j + 1:]
            if not value:
                if i >= len(args):
                    return None
                value = args[i]
                i += 1
            _set(opts, spec, value)
            break
    return opts, pos


def _set(opts, spec, value):
    dest, _, repeat = spec
    if repeat:
        opts.setdefault(dest, []).append(value)
    else:
        opts[dest] = value


def _root(argv: list):
    """-> (host, the command's words) when the root options are only -H/--host, else None."""
    host = os.environ.get("DOCKYARD_HOST") or "unix:///run/dockyard.sock"
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        a = argv[i]
        if a in ("-H", "--host") and i + 1 < len(argv):
            host, i = argv[i + 1], i + 2
        elif a.startswith("--host="):
            host, i = a[len("--host="):], i + 1
        else:
            return None
    return host, argv[i:]


def plan(argv: list):
    """-> (command name, host, keyword arguments) for a command line taken here, else None."""
    root = _root(argv)
    if root is None:
        return None
    host, words = root
    if words[:1] == ["container"]:
        words = words[1:]
    if words[:1] == ["exec"]:
        parsed = parse_options(words[1:], EXEC_FLAGS, interspersed=False)
        if parsed is None or len(parsed[1]) < 2:
            return None
        opts, (container, *command) = parsed
        return "exec", host, dict(opts, container=container, command=command)
    if words[:1] == ["stats"]:
        parsed = parse_options(words[1:], STATS_FLAGS, interspersed=True)
        if parsed is None:
            return None
        opts, containers = parsed
        return "stats", host, dict(opts, containers=containers)
    return None


def main():
    p = plan(sys.argv[1:])
    if p is None:
        from dockyard.cli.main import main as full

        return full()
    name, host, kw = p
    from dockyard.cli import errors, hot
    from dockyard.cli.client import Client

    code = 0
    try:
        try:
            c = Client(host)
        except ValueError as e:  # a malformed -H
            raise errors.CLIError(str(e)) from e
        (hot.exec_command if name == "exec" else hot.stats_command)(c, **kw)
    except (Exception, KeyboardInterrupt, SystemExit) as e:  # noqa: BLE001 - exit_code re-raises the unknown
        code = errors.exit_code(e, name)
    errors.finish(code, name)
