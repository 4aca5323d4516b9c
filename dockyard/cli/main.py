"""``dockyard``: the command line, a thin client of the Docker Engine API.

A command pays only for what it uses (``run`` is benchmarked end to end): the groups below know
their subcommands by name and import a command's module only when it runs (``--help`` lists
them from ``SUMMARIES``); heavy modules (rich, tarfile, the template engine, the .dockerignore
matcher) are imported inside the functions that need them, and a client command skips the
interpreter's teardown. tests/cli/test_help.py checks the tables against the commands and which
modules ``run`` loads.
Errors end here: daemon errors print ``Error response from daemon: ...`` (exit 1; run/create use
125 as docker does), flag errors one line and exit 125, ^C exits 130.
"""

import gc
import importlib
import sys

_GC_WAS_ENABLED = gc.isenabled()
gc.disable()  # while click and this file load: see _loaded()

import click  # noqa: E402

from dockyard.cli import errors  # noqa: E402
from dockyard.cli.client import DEFAULT_HOST  # noqa: E402
from dockyard.cli.common import client, confirm  # noqa: E402


def _loaded(gc_was_enabled: bool):
    """After an import: loading modules allocates tens of thousands of objects that live until
    exit, and no garbage, which the cyclic GC would walk again and again (~1.5 ms of run's
    start-up). So it is off while they load; gc.freeze() then puts them out of its sight."""
    gc.freeze()
    if gc_was_enabled:
        gc.enable()


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use.

    ``lazy`` maps a command name to ``(module, attribute)`` under ``dockyard.cli``, or
    ``(module, factory, arg)`` for a command a factory makes (``inspect_command("image")``).
    The group's help lists them with their ``SUMMARIES``, importing none.
    """

    def __init__(self, *args, lazy=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}
        self._listing = False

    def list_commands(self, ctx):
        return sorted({*self.commands, *self.lazy})

    def format_commands(self, ctx, formatter):
        self._listing = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            self._listing = False

    def get_command(self, ctx, name):
        if name not in self.commands and name in self.lazy:
            if self._listing:  # a stand-in that only has the help line
                return click.Command(name, help=SUMMARIES[self.lazy[name]])
            module, attr, *args = self.lazy[name]
            enabled = gc.isenabled()
            gc.disable()
            try:
                obj = getattr(importlib.import_module("dockyard.cli." + module), attr)
            finally:
                _loaded(enabled)
            self.add_command(obj(*args) if args else obj, name)
        return self.commands.get(name)


def _names(module: str, names: str) -> dict:
    """``{name: (module, attribute)}`` for space-separated names; ``exec=exec_`` names an
    attribute that differs from the command."""
    table = {}
    for word in names.split():
        name, _, attr = word.partition("=")
        table[name] = (module, attr or name)
    return table


ROOT = {
    **_names("containers", "run create start attach stop restart kill rm wait rename top logs ps "
                           "exec=exec_ pause unpause update stats diff export commit"),
    **_names("copy", "cp"),
    **_names("images", "import=import_ images tag rmi history save load pull push"),
    **_names("system", "version info inspect daemon events system=system_group"),
    **_names("registry", "login logout registry"),
    **_names("build", "build builder"),
    **_names("volumes", "volume"),
    **_names("networks", "network port"),
}
CONTAINER = {
    **_names("containers", "run create start attach stop restart kill rm remove=rm ls=ps list=ps ps "
                           "logs wait rename top exec=exec_ pause unpause update stats diff export commit"),
    **_names("copy", "cp"),
    "inspect": ("system", "inspect_command", "container"),
}
IMAGE = {
    **_names("images", "import=import_ ls=images list=images tag rm=rmi remove=rmi history save load "
                       "prune pull push"),
    **_names("build", "build"),
    "inspect": ("system", "inspect_command", "image"),
}
# The first paragraph of each command's help: what `--help` lists for it without importing its
# module. tests/cli/test_help.py checks every one against the command's own help.
SUMMARIES = {
    ('containers', 'run'): 'Create and start a container, attached unless -d.',
    ('containers', 'create'): 'Create a container without starting it; prints its ID.',
    ('containers', 'start'): 'Start one or more stopped containers.',
    ('containers', 'attach'):
        "Attach to a running container's output (and stdin, if it was started with -i).",
    ('containers', 'stop'): 'Stop one or more running containers (the stop signal, then SIGKILL).',
    ('containers', 'restart'): 'Restart one or more containers.',
    ('containers', 'kill'): 'Kill one or more running containers.',
    ('containers', 'rm'): 'Remove one or more containers.',
    ('containers', 'wait'): 'Block until containers stop, then print their exit codes.',
    ('containers', 'rename'): 'Rename a container.',
    ('containers', 'top'): 'Show the processes of a container (ps options may follow).',
    ('containers', 'logs'): 'Fetch the logs of a container.',
    ('containers', 'ps'): 'List containers.',
    ('containers', 'exec_'): "Run a command in a running container; exits with the command's status.",
    ('containers', 'pause'): 'Pause all processes within one or more containers.',
    ('containers', 'unpause'): 'Unpause all processes within one or more containers.',
    ('containers', 'update'): 'Update configuration of one or more containers.',
    ('containers', 'stats'): 'Display a live stream of container resource usage statistics.',
    ('containers', 'diff'): "Inspect changes to files or directories on a container's filesystem.",
    ('containers', 'export'): "Export a container's filesystem as a tar archive.",
    ('containers', 'commit'): "Create a new image from a container's changes.",
    ('copy', 'cp'): 'Copy files/folders between a container and the local filesystem.',
    ('images', 'import_'): "Import a rootfs tarball (path or '-' for stdin) as an image.",
    ('images', 'images'): 'List images.',
    ('images', 'tag'): 'Create a tag TARGET that refers to SOURCE.',
    ('images', 'rmi'): 'Remove one or more images.',
    ('images', 'history'): 'Show the history of an image.',
    ('images', 'save'): 'Save images to a tar archive (docker-archive format).',
    ('images', 'load'): 'Load images from a tar archive (docker-archive or OCI layout).',
    ('images', 'pull'): 'Download an image (NAME[:TAG|@DIGEST]) from a registry.',
    ('images', 'push'): 'Upload an image (NAME[:TAG]) to its registry.',
    ('system', 'version'): 'Show the client and server versions.',
    ('system', 'info'): 'Show system-wide information.',
    ('system', 'inspect'): 'Display detailed information on containers, images or volumes.',
    ('system', 'daemon'): 'Run the dockyard daemon (the Docker Engine API server) in the foreground.',
    ('system', 'events'): 'Get real time events from the server.',
    ('system', 'system_group'): 'Manage dockyard: disk usage, prune.',
    ('registry', 'login'): 'Log in to a registry (Docker Hub when SERVER is not given).',
    ('registry', 'logout'): 'Log out from a registry (remove its stored credentials).',
    ('registry', 'registry'): 'Run an OCI distribution registry (serve) and collect its garbage (gc).',
    ('build', 'build'): 'Build an image from a Dockerfile.',
    ('build', 'builder'): 'Manage builds.',
    ('volumes', 'volume'): 'Manage volumes.',
    ('networks', 'network'): 'Manage networks.',
    ('networks', 'port'): "List a container's port mappings, or the host side of one (PORT[/PROTO]).",
    ('system', 'inspect_command', 'container'): 'Display detailed information on one or more containers.',
    ('images', 'prune'): 'Remove unused images.',
    ('system', 'inspect_command', 'image'): 'Display detailed information on one or more images.',
}


@click.group(cls=LazyGroup, lazy=ROOT, context_settings={"help_option_names": ["--help"]})
@click.option("-H", "--host", envvar="DOCKYARD_HOST", default=DEFAULT_HOST, show_default=True,
              help="Daemon socket (unix:///path or tcp://host:port); env DOCKYARD_HOST")
def cli(host):
    """dockyard: a container platform that speaks the Docker Engine API."""


@click.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help="Filters (until=, label=)")
def container_prune(force, filters):
    """Remove all stopped containers."""
    from dockyard.cli.client import filters_param
    from dockyard.cli.format import human_size

    if not confirm("WARNING! This will remove all stopped containers.", force):
        return
    res = client().post("/containers/prune", {"filters": filters_param(filters)}) or {}
    deleted = res.get("ContainersDeleted") or []
    if deleted:
        print("Deleted Containers:")
        print("".join(d + "\n" for d in deleted))
    print(f"Total reclaimed space: {human_size(res.get('SpaceReclaimed', 0))}")


@cli.group(cls=LazyGroup, lazy=CONTAINER)
def container():
    """Manage containers."""


container.add_command(container_prune)


@cli.group(cls=LazyGroup, lazy=IMAGE)
def image():
    """Manage images."""


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


def _long_host(argv: list) -> list:
    """The root's ``-H X`` spelt ``--host X``: click tries every ``-X`` as a long option first and
    builds a NoSuchOption for it (importing difflib, looking up a gettext catalog: ~1.7 ms)."""
    for i, a in enumerate(argv):
        if not a.startswith("-"):
            break  # the command (or --host's value): the rest is not the root's
        if a == "-H" and i + 1 < len(argv):
            return argv[:i] + ["--host"] + argv[i + 1:]
    return argv


def main(argv=None):
    """The console script (``argv`` None: this process is the command) or an in-process call."""
    whole_process = argv is None
    argv = _long_host(sys.argv[1:] if argv is None else list(argv))
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
    except (Exception, KeyboardInterrupt, SystemExit) as e:  # noqa: BLE001 - exit_code re-raises the unknown
        code = errors.exit_code(e, name)
    errors.finish(code, name, whole_process)


_loaded(_GC_WAS_ENABLED)

if __name__ == "__main__":
    main()
