"""docker diff, export and commit: a container's writable layer seen from the outside.

The image store owns the upper dir (``changes``, ``commit``); the engine adds what only it knows:
/etc/hostname, /etc/hosts and /etc/resolv.conf are files it bind-mounts over (the runtime creates
empty mountpoints for them in the upper dir), which Docker keeps in a separate init layer. So they
are hidden from diff, and left out of a committed layer (``ImageStore.commit(exclude=)``), running
or not. Export flattens the overlay mount (not the container's view, which
would include /proc and volumes), mounting it for the call when the container is not running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile

from dockyard import errdefs
from dockyard.engine import copy as copyops
from dockyard.engine import sysmount

ENGINE_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


def hide_engine_files(changes: list[dict]) -> list[dict]:
    """Drop the engine's placeholders and the directories that only changed because of them."""
    kept = [ch for ch in changes if not (ch["Path"] in ENGINE_FILES and ch["Kind"] == 1)]
    dropped = len(kept) != len(changes)

    def has_children(p):
        return any(o["Path"].startswith(p + "/") for o in kept)
    # /etc copied up only to hold the mountpoints: nothing of its own changed below it.
    return [ch for ch in kept if not (dropped and ch["Path"] == "/etc" and ch["Kind"] == 0
                                      and not has_children("/etc"))]


def export_tar(root_fd: int, out) -> None:
    """The whole tree under root_fd as a tar, entries named relative to it (no './' prefix)."""
    import tarfile

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        inodes: dict = {}
        for child in sorted(os.listdir(root_fd)):
            copyops._add(tf, root_fd, child, child, inodes)


class LayerOps:
    """Engine methods behind /containers/{id}/changes, /export and POST /commit (mixed into Engine)."""

    async def changes(self, ref: str) -> list[dict]:
        c = self.get(ref)
        try:
            out = await asyncio.to_thread(self.images.changes, c.id)
        except errdefs.NotFound:
            return []  # never started: no writable layer yet
        return hide_engine_files(out)

    async def export(self, ref: str):
        """A file positioned at the start of the flattened rootfs tar (spooled, so a stopped
        container's rootfs is unmounted before the response streams)."""
        c = self.get(ref)

        def build():
            fd = os.open(c.rootfs, os.O_RDONLY | os.O_DIRECTORY)
            out = tempfile.SpooledTemporaryFile(32 << 20)
            try:
                export_tar(fd, out)
            except BaseException:
                out.close()
                raise
            finally:
                os.close(fd)
            out.seek(0)
            return out

        if c.state.running and sysmount.is_mountpoint(c.rootfs):
            # No lock: an exit's lazy unmount leaves the tree readable through our open fd.
            return await asyncio.to_thread(build)
        async with self._locks[c.id]:
            mounted = await asyncio.to_thread(self._mount_stopped, c)
            try:
                return await asyncio.to_thread(build)
            finally:
                if mounted:
                    await asyncio.to_thread(sysmount.unmount, c.rootfs)

    async def commit(self, ref: str, repo: str = "", tag: str = "", comment: str = "", author: str = "",
                     pause: bool = True, changes=(), config: dict | None = None):
        """``docker commit``; returns the new Image. ``config`` overrides the container's Config."""
        c = self.get(ref)
        if repo and not tag and "@" not in repo:
            tag = "latest"
        target = f"{repo}:{tag}" if repo else None
        merged = dict(c.config or {})
        merged.update({k: v for k, v in (config or {}).items() if v not in (None, "", [], {})})
        merged.pop("Image", None)
        created_by = " ".join(c.config.get("Cmd") or [])
        async with self._locks[c.id]:
            paused_here = False
            if pause and c.state.status == "running":
                await asyncio.to_thread(self.runtime.pause, c.id)
                paused_here = True
            try:
                image = await asyncio.to_thread(self._commit_layer, c, merged, target, list(changes),
                                                comment, author, created_by)
            finally:
                if paused_here:
                    with contextlib.suppress(errdefs.DockyardError):
                        await asyncio.to_thread(self.runtime.resume, c.id)
        self._cev(c, "commit", comment=comment)
        return image

    def _commit_layer(self, c, config, target, changes, comment, author, created_by):
        # The placeholders (and an /etc copied up only for them) are what diff hides; the store
        # leaves them out of the layer, which also works while overlayfs has the upper dir mounted.
        try:
            found = self.images.changes(c.id)
        except (errdefs.NotFound, IndexError):
            found = []  # no writable layer: images.commit reports it
        shown = {ch["Path"] for ch in hide_engine_files(found)}
        hidden = [ch["Path"] for ch in found if ch["Path"] not in shown]
        return self.images.commit(c.id, container_config=config, ref=target, changes=changes,
                                  comment=comment, author=author, created_by=created_by, exclude=hidden)
