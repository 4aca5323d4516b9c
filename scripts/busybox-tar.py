"""Write the busybox rootfs tar (tests/rootfs.py) to a path: `python3 scripts/busybox-tar.py OUT.tar`.

setup.sh and the benchmarks import it as the `busybox` image; there is no registry here.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import rootfs  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: busybox-tar.py OUT.tar")
    print(rootfs.make_rootfs_tar(sys.argv[1]))
