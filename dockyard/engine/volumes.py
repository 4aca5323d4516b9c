"""Local volumes: ``<data-root>/volumes/<name>/_data`` plus a row in the engine's state DB.

A volume's commit point is its row (written after the directory exists; a directory without a row
is swept on open). The in-use check lives in the engine, which knows the containers; this module
only owns names, directories and metadata.
"""

import os
import re
import secrets
import shutil
import time

from dockyard import errdefs
from dockyard.engine import Volume

ANON_LABEL = "com.docker.volume.anonymous"
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_LOCAL_OPTS = ("type", "device", "o", "size")


def validate_volume_name(name: str):
    if not _NAME_RE.match(name):
        raise errdefs.InvalidArgument(
            f'create {name}: "{name}" includes invalid characters for a local volume name, only '
            f'"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
            f"use absolute path")


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class VolumeStore:
    def __init__(self, root: str, db):
        self.root = root
        self._db = db
        os.makedirs(root, mode=0o701, exist_ok=True)
        self._volumes = {v.name: v for v in db.volumes()}
        for name in os.listdir(root):  # directories whose row never got written (crash mid-create)
            if name not in self._volumes:
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)

    def get(self, name: str) -> Volume:
        v = self._volumes.get(name)
        if v is None:
            raise errdefs.NotFound(f"get {name}: no such volume")
        return v

    def exists(self, name: str) -> bool:
        return name in self._volumes

    def list(self) -> list[Volume]:
        return list(self._volumes.values())

    def create(self, name=None, driver="local", driver_opts=None, labels=None, anonymous=False) -> Volume:
        """Create (or, for an existing name, return) a volume; Docker's create is idempotent."""
        driver = driver or "local"
        if driver != "local":
            raise errdefs.NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
        if not name:
            name, anonymous = secrets.token_hex(32), True
        else:
            validate_volume_name(name)
        for key in driver_opts or {}:
            if key not in _LOCAL_OPTS:
                raise errdefs.InvalidArgument(f'create {name}: invalid option key: "{key}"')
        if name in self._volumes:
            return self._volumes[name]
        labels = dict(labels or {})
        if anonymous:
            labels.setdefault(ANON_LABEL, "")
        data = os.path.join(self.root, name, "_data")
        os.makedirs(data, mode=0o755, exist_ok=True)
        v = Volume(name=name, driver="local", mountpoint=data, created_at=_now_rfc3339(),
                   labels=labels, options=dict(driver_opts or {}), anonymous=anonymous)
        self._db.put_volume(v)  # commit point
        self._volumes[name] = v
        return v

    def remove(self, name: str):
        self.get(name)
        self._db.delete_volume(name)  # commit point; the directory is garbage from here on
        del self._volumes[name]
        shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)

    def size(self, name: str) -> int:
        total = 0
        for dirpath, _, files in os.walk(self.get(name).mountpoint):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_size
                except OSError:
                    pass
        return total
