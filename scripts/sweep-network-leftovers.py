"""Delete bridges, veths and nft tables left by dockyard daemons that no longer run (CI, by hand).

dockyard/network names its kernel objects after a per-daemon tag (6 hex of
sha256(<data-root>/network)): links ``dy<tag>`` / ``dy<tag>-<6 hex>`` and nft tables
``dockyard_<tag>...``. A tag that belongs to no running ``dockyard daemon`` marks a leftover of a
killed run. Host veths (``veth...``) vanish with their bridge's containers' netns or are removed by
the daemon's own reconcile, so they are not touched here. `--dry-run` only prints.
"""

import hashlib
import os
import re
import subprocess
import sys


def live_tags() -> set[str]:
    tags = set()
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                args = [a.decode(errors="replace") for a in f.read().split(b"\0")]
        except OSError:
            continue
        if "daemon" in args and any(a.endswith("/dockyard") for a in args[:2]):
            root = args[args.index("--data-root") + 1] if "--data-root" in args else "/var/lib/dockyard"
            tags.add(hashlib.sha256(os.path.join(os.path.abspath(root), "network").encode()).hexdigest()[:6])
    return tags


def main():
    dry = "--dry-run" in sys.argv
    live = live_tags()
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    doomed = [["ip", "link", "del", name]
              for name in re.findall(r"^\d+: (dy[0-9a-f]{6}(?:-[0-9a-f]{6})?)[@:]", links, re.M)
              if name[2:8] not in live]
    doomed += [["nft", "delete", "table", family, table]
               for family, table, tag in re.findall(r"^table (\w+) (dockyard_([0-9a-f]{6})\w*)$", tables, re.M)
               if tag not in live]
    for argv in doomed:
        print("sweep:", " ".join(argv))
        if not dry:
            subprocess.run(argv, capture_output=True)


if __name__ == "__main__":
    main()
