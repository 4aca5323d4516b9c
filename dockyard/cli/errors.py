"""How a command ends: the user-facing error type, exit codes, and the process's exit.

Shared by the click front end (``cli/main.py``) and the hand-parsed hot commands
(``cli/entry.py``), so both print the same lines and exit with the same codes. Imports nothing
heavy: it is on the path of every command.
"""

import os
import sys

from dockyard.cli.client import APIError, DaemonUnavailable


class CLIError(Exception):
    """A user-facing failure: ``message`` is printed as one line, ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.message, self.code = message, code


# Long-running commands: they exit the ordinary way (atexit handlers, non-daemon threads joined).
SERVERS = ("daemon", "registry")


def exit_code(e: BaseException, name: str) -> int:
    """Print what the user should see for ``e`` (raised by command ``name``) and return the exit
    status; re-raises what is not a known way for a command to end (a bug: the traceback shows)."""
    if isinstance(e, KeyboardInterrupt):
        return 130
    if isinstance(e, CLIError):
        print(e.message, file=sys.stderr)
        return e.code
    if isinstance(e, DaemonUnavailable):
        print(e, file=sys.stderr)
        return 125 if name in ("run", "create") else 1
    if isinstance(e, APIError):
        print(f"Error response from daemon: {e.message}", file=sys.stderr)
        return 1
    if isinstance(e, BrokenPipeError):
        # The reader of our stdout went away (| head): exit quietly (click does the same for
        # what it sees first). An attached container keeps running, as with docker.
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        return 1
    if isinstance(e, SystemExit):
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    # A template error can only come from format.py, which only formatting commands import.
    fmt = sys.modules.get("dockyard.cli.format")
    if fmt is not None and isinstance(e, fmt.TemplateError):
        print(f"template parsing error: {e}", file=sys.stderr)
        return 1
    raise e


def finish(code: int, name: str, whole_process: bool = True):
    """Flush and exit. A client command that is the whole process skips the interpreter's
    teardown (freeing every module and object: ~8 ms with click loaded); the kernel frees it
    all. Its threads are daemon threads, which an ordinary exit would abandon as well."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    if whole_process and name not in SERVERS:
        try:
            sys.stderr.flush()
        except OSError:
            pass
        os._exit(code)
    sys.exit(code)
