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


# -- the builder's pure parts: how a RUN's argv, its mounts and their stubs are planned ------------

from dockyard.build import dockerfile  # noqa: E402
from dockyard.build.builder import Builder, _missing_paths  # noqa: E402


def _builder(cfg=None):
    b = object.__new__(Builder)  # no engine: these methods only read the stage's config
    b.cfg = cfg or {}
    return b


def _inst(text):
    return dockerfile.parse("FROM busybox\n" + text).stages[0].instructions[0]


def test_run_command_heredoc_forms():
    b = _builder()
    assert b._run_command(_inst("RUN echo hi\n")) == (["/bin/sh", "-c", "echo hi"], None)
    # only a heredoc: its body is the script
    assert b._run_command(_inst("RUN <<EOF\necho a\necho b\nEOF\n")) == (["/bin/sh", "-c", "echo a\necho b\n"], None)
    # a shebang: run as a file mounted under /dev/pipes, the body is the file
    assert b._run_command(_inst("RUN <<-'EOF'\n\t#!/usr/bin/env python3\n\tprint(1)\n\tEOF\n")) == \
        (["/dev/pipes/EOF"], "#!/usr/bin/env python3\nprint(1)\n")
    # anything else: the shell gets the line, the bodies and the terminators
    assert b._run_command(_inst('RUN <<A cat >a && <<"B" cat\nx\nA\ny\nB\n')) == \
        (["/bin/sh", "-c", '<<A cat >a && <<"B" cat\nx\nA\ny\nB\n'], None)
    # SHELL applies to the script too
    assert _builder({"Shell": ["/bin/bash", "-ec"]})._run_command(_inst("RUN <<EOF\ntrue\nEOF\n"))[0] == \
        ["/bin/bash", "-ec", "true\n"]


def test_run_mounts_are_expanded_checked_and_absolute():
    b = _builder({"WorkingDir": "/app"})
    inst = _inst("RUN --mount=type=cache,target=$DIR,id=${ID},mode=0700 --mount=type=tmpfs,target=/t,size=1m true\n")
    cache, tmpfs = b._run_mounts(inst, {"DIR": "cache", "ID": "pip"})
    assert (cache.type, cache.target, cache.id, cache.mode, cache.readonly) == ("cache", "/app/cache", "pip", 0o700, False)
    assert (tmpfs.type, tmpfs.target, tmpfs.size) == ("tmpfs", "/t", "1m")
    for bad, why in [("type=secret,id=x", "type=secret is not supported"),
                     ("type=ssh", "type=ssh is not supported"),
                     ("type=cache,target=/", "can't be mounted on"),
                     ("type=cache,target=/c,from=stage", "seeded from= is not supported"),
                     ("type=tmpfs,target=/t,size=lots", "size must be bytes")]:
        with pytest.raises(dockerfile.DockerfileError, match=why):
            b._run_mounts(_inst(f"RUN --mount={bad} true\n"), {})
    with pytest.raises(dockerfile.DockerfileError, match="already a mount"):
        b._run_mounts(_inst("RUN --mount=type=tmpfs,target=/x --mount=type=cache,target=/x/ true\n"), {})


def test_missing_paths_are_the_mount_stubs(tmp_path):
    (tmp_path / "var").mkdir()
    os.symlink("/var", tmp_path / "link")  # resolved inside the root, as the runtime does
    assert _missing_paths(str(tmp_path), "/var") == []
    assert _missing_paths(str(tmp_path), "/var/cache/apt") == ["/var/cache", "/var/cache/apt"]
    assert _missing_paths(str(tmp_path), "/link/x") == ["/link/x"]
    assert _missing_paths(str(tmp_path), "/new") == ["/new"]


class _Store:
    def __init__(self, data_root):
        self.root = os.path.join(data_root, "images")


def test_cache_mount_dirs_sharing_and_prune(tmp_path):
    import asyncio
    import contextlib

    b = _builder()
    b.store = _Store(str(tmp_path))
    mounts_dir = tmp_path / "build" / "cache-mounts"

    def mount(text):
        (m,) = b._run_mounts(_inst(f"RUN --mount=type=cache,{text} true\n"), {})
        return m

    async def scenario():
        async with contextlib.AsyncExitStack() as held:
            first = await b._cache_dir(held, mount("id=pip,target=/c,sharing=private,uid=7,mode=0750"))
            assert first == str(mounts_dir / "pip")
            st = os.stat(first)
            assert (st.st_uid, st.st_mode & 0o777) == (7, 0o750)
            # private: a second user while the first holds it gets its own instance
            async with contextlib.AsyncExitStack() as other:
                assert await b._cache_dir(other, mount("id=pip,target=/c,sharing=private")) == first + "~1"
            # shared: both at once
            async with contextlib.AsyncExitStack() as s1, contextlib.AsyncExitStack() as s2:
                a = await b._cache_dir(s1, mount("target=/var/cache/apt"))
                assert await b._cache_dir(s2, mount("target=/var/cache/apt")) == a
                assert os.path.basename(a) != "apt" and "/" not in os.path.relpath(a, mounts_dir)  # hashed
            # locked: the second waits until the first is done
            s1 = contextlib.AsyncExitStack()
            await b._cache_dir(s1, mount("id=l,target=/l,sharing=locked"))
            s2 = contextlib.AsyncExitStack()
            waiter = asyncio.ensure_future(b._cache_dir(s2, mount("id=l,target=/l,sharing=locked")))
            await asyncio.sleep(0.2)
            assert not waiter.done()
            await s1.aclose()
            assert await asyncio.wait_for(waiter, 5) == str(mounts_dir / "l")
            await s2.aclose()
            # prune removes every cache mount no build holds, and keeps the one in use
            cache = BuildCache(str(tmp_path / "build" / "cache.db"))
            dropped = cache.prune()
            cache.close()
            assert "pip" not in dropped and {"pip~1", "l"} <= set(dropped)
            assert os.path.isdir(first) and not os.path.exists(first + "~1")
        assert sorted(n for n in os.listdir(mounts_dir) if not n.endswith(".lock")) == ["pip"]

    asyncio.run(scenario())


def test_remove_stubs_leaves_only_what_the_run_wrote(tmp_path):
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "hosts").write_text("")  # a stub file for the engine's bind mount
    (upper / "var" / "cache" / "thing").mkdir(parents=True)  # a stub dir for a cache mount
    (upper / "usr" / "lib").mkdir(parents=True)  # /usr copied up to hold a stub, beside a real file
    (upper / "usr" / "lib" / "real").write_text("written by the RUN")
    (upper / "opt").mkdir()
    os.chmod(upper / "opt", 0o700)  # the RUN changed the mode: that is content
    b = _builder()
    b.store = type("S", (), {"rootfs_upper": lambda self, key: str(upper)})()
    meta = lambda p, mode=None: ((os.stat(p).st_mode & ~0o777) | (mode or os.stat(p).st_mode & 0o777),  # noqa: E731
                                 0, 0)
    parents = {"/etc": meta(upper / "etc"), "/var": meta(upper / "var"), "/usr": meta(upper / "usr"),
               "/opt": meta(upper / "opt", 0o755)}
    b._remove_stubs("cid", ["/etc/hosts", "/var/cache", "/var/cache/thing", "/usr/lib/x", "/opt/m"], parents)
    left = sorted(os.path.relpath(os.path.join(dp, n), upper) for dp, ds, fs in os.walk(upper) for n in ds + fs)
    assert left == ["opt", "usr", "usr/lib", "usr/lib/real"]
