"""safepath: untrusted paths resolve inside root, whatever symlinks and '..' say."""

import os

import pytest

from dockyard import safepath


@pytest.fixture
def tree(tmpdir_clean):
    root = os.path.join(tmpdir_clean, "root")
    os.makedirs(os.path.join(root, "a", "b"))
    with open(os.path.join(tmpdir_clean, "secret"), "w") as f:
        f.write("host secret")
    with open(os.path.join(root, "a", "file"), "w") as f:
        f.write("inside")
    os.symlink("/", os.path.join(root, "abs_root"))
    os.symlink("../../../../..", os.path.join(root, "a", "up"))
    os.symlink(os.path.join(tmpdir_clean, "secret"), os.path.join(root, "to_secret"))
    os.symlink("b", os.path.join(root, "a", "rel"))
    os.symlink("loop2", os.path.join(root, "loop1"))
    os.symlink("loop1", os.path.join(root, "loop2"))
    return root


@pytest.mark.parametrize("unsafe,expected", [
    ("a/file", "a/file"),
    ("/a/file", "a/file"),
    ("../../a/file", "a/file"),
    ("a/../../../a/file", "a/file"),
    ("abs_root/a/file", "a/file"),
    ("a/up/a/file", "a/file"),
    ("a/rel", "a/b"),
    ("a/rel/../file", "a/file"),
    ("missing/../a", "a"),
    ("to_secret", None),  # absolute target re-rooted: <root>/<tmpdir>/secret, not the host file
    ("", ""),
])
def test_resolve_stays_in_root(tree, unsafe, expected):
    got = safepath.resolve(tree, unsafe)
    assert got == tree or got.startswith(tree + "/")
    if expected is not None:
        assert got == os.path.join(tree, expected).rstrip("/")


def test_resolve_symlink_loop_is_an_error(tree):
    with pytest.raises(safepath.InvalidArgument, match="symbolic links"):
        safepath.resolve(tree, "loop1")


def test_open_beneath_cannot_escape(tree):
    with pytest.raises(FileNotFoundError):  # <root>/<tmpdir>/secret does not exist
        safepath.open_beneath(tree, "to_secret")
    with pytest.raises(FileNotFoundError):
        safepath.open_beneath(tree, "a/up/" + os.path.dirname(tree).lstrip("/") + "/secret")
    fd = safepath.open_beneath(tree, "abs_root/a/up/a/file")
    try:
        assert os.read(fd, 100) == b"inside"
    finally:
        os.close(fd)


def test_open_parent_creates_inside_root(tree):
    fd, name = safepath.open_parent(tree, "abs_root/new/dir/leaf", create=True)
    try:
        assert name == "leaf"
        assert os.readlink(f"/proc/self/fd/{fd}") == os.path.join(tree, "new", "dir")
    finally:
        os.close(fd)
    with pytest.raises(safepath.InvalidArgument):
        safepath.open_parent(tree, "..")


def test_fallback_without_openat2(tree, monkeypatch):
    monkeypatch.setattr(safepath, "_have_openat2", False)
    fd = safepath.open_beneath(tree, "abs_root/a/up/a/file")
    try:
        assert os.read(fd, 100) == b"inside"
    finally:
        os.close(fd)
    with pytest.raises(FileNotFoundError):
        safepath.open_beneath(tree, "to_secret")
