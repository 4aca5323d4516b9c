"""Fixtures for the image store tests: a throwaway store and the busybox rootfs tar."""

import io
import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/rootfs.py

from rootfs import make_rootfs_tar  # noqa: E402

from dockyard.images.store import ImageStore  # noqa: E402


@pytest.fixture
def tmpdir_clean():
    """A temp dir removed at teardown, whatever the test left in it (root-owned files, devices)."""
    d = tempfile.mkdtemp(prefix="dockyard-img-test-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_tar() -> bytes:
    return make_rootfs_tar()


@pytest.fixture
def store(tmpdir_clean):
    s = ImageStore(os.path.join(tmpdir_clean, "images"))
    yield s
    s.close()


@pytest.fixture
def busybox(store, busybox_tar):
    return store.import_rootfs(io.BytesIO(busybox_tar), "busybox:latest", changes=['CMD ["sh"]'])
