"""Unit tests of the build cache: step keys, the content+metadata hash of copied files, the table."""

import os

import pytest

from dockyard.build.cache import BuildCache, hash_tree, step_key


def test_step_key_depends_on_every_input():
    base = step_key("sha256:a", "RUN echo hi", {"A": "1"}, "")
    assert base == step_key("sha256:a", "RUN echo hi", {"A": "1"}, "")
    assert len({base, step_key("sha256:b", "RUN echo hi", {"A": "1"}),
                step_key("sha256:a", "RUN echo ho", {"A": "1"}),
                step_key("sha256:a", "RUN echo hi", {"A": "2"}),
                step_key("sha256:a", "RUN echo hi", {"A": "1"}, "files")}) == 5
    # the order build args were given in does not matter
    assert step_key("p", "t", {"A": "1", "B": "2"}) == step_key("p", "t", {"B": "2", "A": "1"})


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("one")
    (tmp_path / "d" / "g").write_text("two")
    os.symlink("f", tmp_path / "d" / "link")
    return tmp_path


def test_hash_tree_sees_content_mode_names_and_links(tree):
    h = hash_tree(str(tree), "d")
    assert h == hash_tree(str(tree), "d")
    os.utime(tree / "d" / "f", (1, 1))  # mtimes do not count
    assert hash_tree(str(tree), "d") == h
    changes = [
        lambda: (tree / "d" / "f").write_text("ONE"),
        lambda: os.chmod(tree / "d" / "g", 0o600),
        lambda: (os.unlink(tree / "d" / "link"), os.symlink("g", tree / "d" / "link")),
        lambda: (tree / "d" / "new").write_text(""),
        lambda: os.rename(tree / "d" / "new", tree / "d" / "renamed"),
    ]
    seen = {h}
    for change in changes:
        change()
        seen.add(hash_tree(str(tree), "d"))
    assert len(seen) == len(changes) + 1


def test_hash_tree_of_one_file_ignores_siblings(tree):
    h = hash_tree(str(tree), "d/f")
    (tree / "d" / "g").write_text("changed")
    assert hash_tree(str(tree), "d/f") == h


def test_hash_tree_missing(tree):
    with pytest.raises(FileNotFoundError):
        hash_tree(str(tree), "nope")


def test_cache_table_survives_reopen_and_prunes(tmp_path):
    path = str(tmp_path / "build" / "cache.db")
    c = BuildCache(path)
    c.put("k1", "sha256:1")
    c.put("k2", "sha256:2")
    c.close()
    c = BuildCache(path)
    assert c.get("k1") == "sha256:1"
    c.forget(image_id="sha256:1")
    assert c.get("k1") is None
    assert c.prune() == ["k2"]
    assert c.get("k2") is None
    c.close()
