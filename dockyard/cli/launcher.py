"""The ``dockyard`` command's launcher: the interpreter without ``site``, import paths written in.

``site`` walks every site directory and runs each ``.pth`` file in it on every interpreter start;
on a machine with a few packages that is 5-25 ms (30 ms here, where one .pth imports certifi),
as much as the rest of a `dockyard ps`. The CLI is on the path of everything a user does, so
``setup.sh`` replaces pip's console script with this launcher (``python -m dockyard.cli.launcher
PATH``): ``#!<interpreter> -S``, then the directories ``site`` would have added (the site
directories and this checkout) appended to ``sys.path`` as ``site`` would have done, without
running any ``.pth``. Long-running commands (the daemon and servers) run the real ``site.main()``
first, so they see the environment exactly as a normal start does. Re-running pip puts the console
script back; it works the same, only slower.
"""

import os
import site
import sys

# Commands that run for long and may rely on what .pth files set up (certificates, hooks).
FULL_SITE = ("daemon", "registry")


def text(python: str = sys.executable) -> str:
    import dockyard

    root = os.path.dirname(os.path.dirname(os.path.abspath(dockyard.__file__)))
    dirs = [root]
    for d in [*site.getsitepackages(), site.getusersitepackages()]:
        if os.path.isdir(d) and d not in dirs:
            dirs.append(d)
    return (f"#!{python} -S\n"
            "# dockyard's CLI launcher, written by setup.sh (dockyard/cli/launcher.py says why).\n"
            "import sys\n"
            f"if sys.argv[1:2] and sys.argv[1] in {FULL_SITE!r}:\n"
            "    import site\n"
            "    site.main()\n"
            f"sys.path += [d for d in {dirs!r} if d not in sys.path]\n"
            "from dockyard.cli.entry import main\n"
            "sys.exit(main())\n")


def write(path: str) -> bool:
    """Write the launcher at ``path`` (atomically, mode 755). -> False if it was there already."""
    want = text()
    try:
        with open(path) as f:
            if f.read() == want:
                return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(want)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return True


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m dockyard.cli.launcher PATH")
    write(sys.argv[1])
