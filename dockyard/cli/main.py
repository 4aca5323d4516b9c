"""``dockyard``: the command line, a thin client of the Docker Engine API.

Only click and the standard library are imported on the way to any command (``run`` is benchmarked
end to end); rich is imported lazily for ``load``'s progress bar, the daemon only by ``daemon``.
Errors end here: daemon errors print ``Error response from daemon: ...`` (exit 1; run/create use
125 as docker does), flag errors one line and exit 125, ^C exits 130.
"""

import os
import sys

import click

from dockyard.cli import build, containers, copy, images, networks, registry, system, volumes
from dockyard.cli.client import DEFAULT_HOST, APIError, DaemonUnavailable
from dockyard.cli.common import CLIError, client, confirm
from dockyard.cli.format import TemplateError, human_size


@click.group(context_settings={"help_option_names": ["--help"]})
@click.option("-H", "--host", envvar="DOCKYARD_HOST", default=DEFAULT_HOST, show_default=True,
              help="Daemon socket (unix:///path or tcp://host:port); env DOCKYARD_HOST")
def cli(host):
    """dockyard: a container platform that speaks the Docker Engine API."""


for cmd in containers.COMMANDS + images.COMMANDS + system.COMMANDS + registry.COMMANDS + build.COMMANDS:
    cli.add_command(cmd)
cli.add_command(volumes.volume)
cli.add_command(networks.network)
for cmd in networks.COMMANDS:
    cli.add_command(cmd)


@click.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help="Filters (until=, label=)")
def container_prune(force, filters):
    """Remove all stopped containers."""
    from dockyard.cli.client import filters_param

    if not confirm("WARNING! This will remove all stopped containers.", force):
        return
    res = client().post("/containers/prune", {"filters": filters_param(filters)}) or {}
    deleted = res.get("ContainersDeleted") or []
    if deleted:
        print("Deleted Containers:")
        print("".join(d + "\n" for d in deleted))
    print(f"Total reclaimed space: {human_size(res.get('SpaceReclaimed', 0))}")


@cli.group()
def container():
    """Manage containers."""


for name, cmd in {"run": containers.run, "create": containers.create, "start": containers.start, "attach": containers.attach,
                  "stop": containers.stop, "restart": containers.restart, "kill": containers.kill,
                  "rm": containers.rm, "remove": containers.rm, "ls": containers.ps,
                  "list": containers.ps, "ps": containers.ps, "logs": containers.logs,
                  "wait": containers.wait, "rename": containers.rename, "top": containers.top,
                  "exec": containers.exec_, "pause": containers.pause, "unpause": containers.unpause,
                  "stats": containers.stats, "diff": containers.diff, "export": containers.export,
                  "commit": containers.commit, "cp": copy.cp,
                  "inspect": system.inspect_command("container"),
                  "prune": container_prune}.items():
    container.add_command(cmd, name)


@cli.group()
def image():
    """Manage images."""


for name, cmd in dict(images.IMAGE_ALIASES, inspect=system.inspect_command("image"), build=build.build).items():
    image.add_command(cmd, name)
volumes.volume.add_command(system.inspect_command("volume"), "inspect")
networks.network.add_command(system.inspect_command("network"), "inspect")


def _command_name(argv) -> str:
    """The subcommand named on the command line (for help hints and run's exit codes)."""
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in ("-H", "--host"):
            skip = True
        elif not a.startswith("-"):
            return a
    return ""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    name = _command_name(argv)
    code = 0
    try:
        rv = cli.main(args=argv, prog_name="dockyard", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except click.exceptions.NoArgsIsHelpError as e:
        print(e.ctx.get_help() if e.ctx else str(e))
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "dockyard"
        print(f"{cmd}: {e.format_message()} (see '{cmd} --help')", file=sys.stderr)
        code = 125
    except click.exceptions.Abort:
        code = 130
    except KeyboardInterrupt:
        code = 130
    except CLIError as e:
        print(e.message, file=sys.stderr)
        code = e.code
    except DaemonUnavailable as e:
        print(e, file=sys.stderr)
        code = 125 if name in ("run", "create") else 1
    except APIError as e:
        print(f"Error response from daemon: {e.message}", file=sys.stderr)
        code = 1
    except TemplateError as e:
        print(f"template parsing error: {e}", file=sys.stderr)
        code = 1
    except BrokenPipeError:
        # The reader of our stdout went away (| head): exit quietly (click does the same for
        # what it sees first). An attached container keeps running, as with docker.
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        code = 1
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    sys.exit(code)


if __name__ == "__main__":
    main()
