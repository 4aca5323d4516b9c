"""The command tree: every command's ``--help`` works, the lazy tables of main.py agree with the
command modules, and ``run`` imports only what it uses (its start-up is benchmarked). No daemon.
"""

import importlib
import os
import subprocess
import sys

import click
import pytest

import dockyard
from dockyard.cli import main

DOCKYARD = os.path.join(os.path.dirname(os.path.realpath(sys.executable)), "dockyard")


def _walk(group, path=()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, f"{' '.join(path + (name,))} is listed but cannot be loaded"
        yield path + (name,)
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, path + (name,))


COMMAND_PATHS = list(_walk(main.cli))


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=" ".join)
def test_help_of_every_command(path, capsys):
    with pytest.raises(SystemExit) as exc:
        main.main([*path, "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0, out
    # registry serve/gc hand --help to their own argument parser ("usage:")
    assert out.lower().startswith(f"usage: dockyard {' '.join(path)}"), out


@pytest.mark.parametrize("group", ["", "container", "image"])
def test_group_help_from_summaries_is_the_commands_own(group, capsys):
    """A fresh ``dockyard --help`` lists commands from main.SUMMARIES without importing them; it
    must print what the loaded commands print (every command is loaded in this process)."""
    args = [group] if group else []
    r = subprocess.run([DOCKYARD, *args, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    with pytest.raises(SystemExit):
        main.main([*args, "--help"])
    assert r.stdout == capsys.readouterr().out
    assert "\nCommands:\n  " in r.stdout


def test_summaries_are_the_first_paragraph_of_each_help():
    specs = {spec for table in (main.ROOT, main.CONTAINER, main.IMAGE) for spec in table.values()}
    assert specs == set(main.SUMMARIES)
    for module, attr, *args in specs:
        obj = getattr(importlib.import_module(f"dockyard.cli.{module}"), attr)
        help_text = (obj(*args) if args else obj).help or ""
        first = " ".join(help_text.split("\n\n")[0].split())
        assert main.SUMMARIES[(module, attr, *args)] == first, f"update main.SUMMARIES for {module}.{attr}"


@pytest.mark.parametrize("module", ["containers", "copy", "images", "system", "registry", "build",
                                    "networks"])
def test_lazy_table_names_every_command_of_a_module(module):
    """A command added to a module's COMMANDS must be added to main.ROOT as well."""
    ctx = click.Context(main.cli)
    for cmd in importlib.import_module(f"dockyard.cli.{module}").COMMANDS:
        assert main.cli.get_command(ctx, cmd.name) is cmd, f"{cmd.name} is missing from main.ROOT"


def test_lazy_groups_resolve_to_the_modules_commands():
    from dockyard.cli import containers, images, networks, volumes

    ctx = click.Context(main.cli)
    image = main.cli.get_command(ctx, "image")
    for name, cmd in images.IMAGE_ALIASES.items():
        assert image.get_command(ctx, name) is cmd, f"image {name}"
    container = main.cli.get_command(ctx, "container")
    assert container.get_command(ctx, "ls") is containers.ps
    assert container.get_command(ctx, "exec") is containers.exec_
    assert container.get_command(ctx, "update") is containers.update  # docker container update
    assert main.cli.get_command(ctx, "volume") is volumes.volume
    assert main.cli.get_command(ctx, "network") is networks.network
    for group in (image, container, volumes.volume, networks.network):
        assert group.get_command(ctx, "inspect") is not None


def _modules_loaded_by(command: str = "") -> set[str]:
    """Module names a fresh interpreter holds after loading ``command`` (or the root help text),
    without site (so what this machine's .pth files import does not count)."""
    paths = [os.path.dirname(os.path.dirname(dockyard.__file__)),
             os.path.dirname(os.path.dirname(click.__file__))]
    code = ("import sys, click; from dockyard.cli import main\n"
            "ctx = click.Context(main.cli, info_name='dockyard')\n"
            "main.cli.get_command(ctx, sys.argv[1]) if sys.argv[1] else ctx.get_help()\n"
            "print('\\n'.join(sys.modules))")
    r = subprocess.run([sys.executable, "-S", "-c", code, command], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)}, timeout=60)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_run_imports_only_what_it_uses():
    mods = _modules_loaded_by("run")
    ours = {m for m in mods if m.startswith("dockyard")}
    # errors: exit codes; hot: run's detach keys (shared with the click-free exec)
    assert ours == {"dockyard", "dockyard.cli", "dockyard.cli.main", "dockyard.cli.client",
                    "dockyard.cli.common", "dockyard.cli.containers", "dockyard.cli.opts",
                    "dockyard.cli.stream", "dockyard.cli.errors", "dockyard.cli.hot"}, \
        "run is benchmarked: import anything else lazily"
    # socket.py and signal.py: client.py and stream.py use the C modules under them
    heavy = {"rich", "tarfile", "socket", "signal", "http.client", "email", "ssl",
             "base64", "getpass", "tempfile", "subprocess"}
    assert not heavy & mods


def test_help_lists_commands_without_importing_them():
    ours = {m for m in _modules_loaded_by() if m.startswith("dockyard")}
    assert ours == {"dockyard", "dockyard.cli", "dockyard.cli.main", "dockyard.cli.client",
                    "dockyard.cli.common", "dockyard.cli.errors"}


def test_version_does_not_load_the_other_commands():
    ours = {m for m in _modules_loaded_by("version") if m.startswith("dockyard")}
    assert ours == {"dockyard", "dockyard.cli", "dockyard.cli.main", "dockyard.cli.client",
                    "dockyard.cli.common", "dockyard.cli.errors", "dockyard.cli.system"}


def test_exit_status_and_message_reach_the_caller():
    """Client commands end with os._exit: what they printed must be flushed first."""
    r = subprocess.run([DOCKYARD, "-H", "unix:///nonexistent/dockyard.sock", "ps"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("Cannot connect to the dockyard daemon at unix:///nonexistent/dockyard.sock.")
    r = subprocess.run([DOCKYARD, "run", "--bogus-flag", "busybox"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 125
    assert r.stderr.startswith("dockyard run: No such option '--bogus-flag'")


def test_malformed_host_is_one_line():
    r = subprocess.run([DOCKYARD, "-H", "bogus", "ps"], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stderr) == (1, "invalid host 'bogus': use unix:///path/to.sock or tcp://host:port\n")
