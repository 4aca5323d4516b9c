"""The container-start fast paths of dockyard-runtime: the argv parser that skips argparse, and the
seccomp BPF cache that skips libseccomp. Each must behave exactly like the slow path it replaces:
same parsed values or the same (argparse) error, same seccomp verdicts."""

import ctypes
import errno
import json
import os
import subprocess
import sys

import pytest

from dockyard.runtime import cjson, oci, seccomp, spec

# --- argv --------------------------------------------------------------------------------------

SAME = [
    ["--root", "/r", "create", "--bundle", "/b", "--pid-file", "/p", "id1"],
    ["create", "-b", "/b", "--pid-file=/p", "--no-pivot", "id1"],
    ["--root", "/r", "--log", "/l", "--log-format", "json", "--systemd-cgroup", "create", "--bundle", "/b",
     "--console-socket", "/s", "--preserve-fds", "2", "--no-new-keyring", "x"],
    ["exec", "--process", "/p", "--pid-file", "/q", "-d", "--tty", "--console-socket", "/s", "c1"],
    ["--root", "/r", "kill", "--all", "c1", "9"], ["kill", "c1"], ["delete", "--force", "c1"],
    ["delete", "c1", "-f"], ["start", "c1"], ["start", "create"],
]
FALLBACK = [
    ["exec", "c1", "sh", "-c", "x"], ["create", "--bund", "/b", "x"], ["state", "c1"], ["--version"],
    ["create", "x", "y"], ["kill", "c", "9", "x"], ["create", "--preserve-fds", "x", "c"],
    ["--log-format", "xml", "create", "c"], ["create"], ["create", "--bundle"], ["create", "--no-pivot=1", "c"],
    ["--bundle", "/b", "create", "c"], ["create", "--bundle", "-x", "c"], ["create", "--", "c"], [],
]


@pytest.mark.parametrize("argv", SAME, ids=" ".join)
def test_fast_args_match_argparse(argv):
    fast = vars(oci._fast_args(argv))
    slow = vars(oci._parser().parse_args(argv))
    assert {k: fast[k] for k in slow} == slow


@pytest.mark.parametrize("argv", FALLBACK, ids=" ".join)
def test_fast_args_leave_the_rest_to_argparse(argv):
    assert oci._fast_args(argv) is None


@pytest.mark.parametrize("argv,msg", [
    (["create", "x", "y"], "dockyard-runtime: unrecognized arguments: y"),
    (["create", "--preserve-fds", "x", "c"], "argument --preserve-fds: invalid int value: 'x'"),
    (["create"], "the following arguments are required: id"),
])
def test_bad_lines_fail_with_argparse_errors_through_the_launcher(tmp_path, argv, msg):
    """The launcher conmon runs (monitor._fast_launcher) gives one line and status 1."""
    from dockyard.runtime.monitor import _fast_launcher

    launcher = _fast_launcher(str(tmp_path))
    r = subprocess.run([launcher, "--root", str(tmp_path / "state"), *argv], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and r.stdout == ""
    assert msg in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "state").exists()


def test_launcher_exits_with_the_commands_status(tmp_path):
    from dockyard.runtime.monitor import _fast_launcher

    launcher = _fast_launcher(str(tmp_path))
    r = subprocess.run([launcher, "--root", str(tmp_path), "delete", "nope"], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (1, "container nope does not exist\n")
    r = subprocess.run([launcher, "--root", str(tmp_path), "list", "-q"], capture_output=True, text=True)
    assert r.returncode == 0


# --- seccomp BPF cache -------------------------------------------------------------------------

PROFILE = spec.default_seccomp_profile(spec.DEFAULT_CAPS)
_SYS = {"mount": 165, "unshare": 272, "clone3": 435, "socket": 41, "personality": 135, "getppid": 110,
        "keyctl": 250}
# (syscall, args) probed under the filter; the Docker profile answers each differently.
PROBES = [("getppid", ()), ("mount", (0, 0, 0, 0, 0)), ("unshare", (0,)), ("clone3", (0, 0)),
          ("socket", (40, 1, 0)), ("socket", (1, 1, 0)), ("personality", (0xFFFFFFFF,)), ("keyctl", (0, 0))]
needs_x86_64 = pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers are x86_64's")


def _verdicts(flt) -> list:
    """Load ``flt`` in a forked child (with no_new_privs, as an unprivileged container would) and
    return what each probe returned there: 0 or the errno."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
            flt.load()
            out = []
            for name, args in PROBES:
                ret = libc.syscall(_SYS[name], *[ctypes.c_long(a) for a in args])
                out.append(ctypes.get_errno() if ret < 0 else 0)
                if ret >= 0 and name == "socket":
                    os.close(ret)
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


@needs_x86_64
def test_cached_program_gives_the_same_verdicts_as_libseccomp(tmp_path):
    fresh = seccomp.prepare(PROFILE, str(tmp_path))
    cached = seccomp.prepare(PROFILE, str(tmp_path))  # from the file this time
    assert isinstance(cached, seccomp.Program) and cached.bpf == fresh.bpf
    via_libseccomp = _verdicts(seccomp.compile(PROFILE))
    assert _verdicts(cached) == via_libseccomp
    # And the filter bites: mount/unshare/keyctl refused, clone3 ENOSYS, AF_VSOCK refused.
    assert via_libseccomp == [0, errno.EPERM, errno.EPERM, errno.ENOSYS, errno.EPERM, 0, 0, errno.EPERM]


def _cache_file(d) -> str:
    (name,) = os.listdir(d)
    return os.path.join(d, name)


def test_cache_hit_does_not_touch_libseccomp(tmp_path, monkeypatch):
    seccomp.prepare(PROFILE, str(tmp_path))
    monkeypatch.setattr(seccomp, "compile", lambda cfg: pytest.fail("libseccomp used on a cache hit"))
    assert isinstance(seccomp.prepare(PROFILE, str(tmp_path)), seccomp.Program)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty", "other profile", "other lib"])
def test_damaged_cache_is_ignored_and_rebuilt(tmp_path, damage):
    good = seccomp.prepare(PROFILE, str(tmp_path)).bpf
    path = _cache_file(tmp_path)
    raw = open(path, "rb").read()
    if damage == "truncate":
        raw = raw[:-5]
    elif damage == "flip":
        raw = raw[:-3] + bytes([raw[-3] ^ 0xFF]) + raw[-2:]
    elif damage == "garbage":
        raw = os.urandom(len(raw))
    elif damage == "empty":
        raw = b""
    elif damage == "other profile":
        # A valid file for another profile under this name (a crc32 collision) must not be used.
        other = seccomp.prepare(dict(PROFILE, defaultErrnoRet=2), str(tmp_path / "x"))
        raw = open(_cache_file(tmp_path / "x"), "rb").read()
        assert other.bpf != good
    elif damage == "other lib":
        fmt, lib, rest = raw.split(b"\n", 2)
        raw = fmt + b"\n" + lib.rsplit(b" ", 1)[0] + b" 1\n" + rest  # libseccomp upgraded since
    with open(path, "wb") as f:
        f.write(raw)
    assert seccomp.read_cache(path, json.dumps(PROFILE, sort_keys=True, separators=(",", ":")).encode()) is None
    assert seccomp.prepare(PROFILE, str(tmp_path)).bpf == good
    assert open(path, "rb").read() != raw  # rewritten whole
    assert seccomp.prepare(PROFILE, str(tmp_path)).bpf == good


def test_unwritable_cache_still_gives_a_program(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    prog = seccomp.prepare(PROFILE, str(blocker / "cache"))  # the cache dir cannot be made
    assert isinstance(prog, seccomp.Program) and len(prog.bpf) % 8 == 0
    assert os.listdir(tmp_path) == ["file"]


def test_bad_profile_fails_and_caches_nothing(tmp_path):
    from dockyard import errdefs

    with pytest.raises(errdefs.InvalidArgument, match="unsupported action"):
        seccomp.prepare({"defaultAction": "SCMP_ACT_NOPE"}, str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_runtime_imports_stay_off_the_hot_path():
    """What conmon's create line imports: no argparse, json (re, enum), typing, socket or libseccomp."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(oci.__file__))))
    code = (f"import sys; sys.path.insert(0, {root!r}); "
            "from dockyard.runtime import oci, linux, process, syscalls, seccomp, cgroups; "
            "oci._fast_args(['create', 'x']); "
            "print(' '.join(m for m in ('argparse', 'json', 're', 'enum', 'typing', 'socket', 'pyseccomp', "
            "'subprocess', 'collections') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "", out.stdout + out.stderr


# --- cjson -------------------------------------------------------------------------------------

DOCS = ['{"a": [1, 2.5, -3e2, true, false, null], "b": {"c": "\\u00e9\\n\\ud83d\\ude00"}}',
        '  [] ', '"x"', '0', '{"nan": NaN, "inf": -Infinity}', '\t{"k":\n{}}\r\n']


@pytest.mark.parametrize("doc", DOCS)
def test_cjson_parses_like_json(doc):
    got, want = cjson.loads(doc), json.loads(doc)
    assert repr(got) == repr(want)  # repr: NaN != NaN
    assert cjson.dumps(want) == json.dumps(want)
    assert cjson.dumps(want, sort_keys=True, separators=(",", ":")) == json.dumps(
        want, sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize("doc", ["", "  ", "{", '{"a": 1} x', "[1,]", "{'a': 1}", '"\x01"', "nul"])
def test_cjson_errors_are_jsons(doc):
    with pytest.raises(json.JSONDecodeError) as want:
        json.loads(doc)
    with pytest.raises(json.JSONDecodeError) as got:
        cjson.loads(doc)
    assert str(got.value) == str(want.value)


def test_cjson_refuses_what_json_refuses():
    with pytest.raises(TypeError, match="not JSON serializable"):
        cjson.dumps({"a": object()})


def test_config_json_error_message(tmp_path):
    (tmp_path / "config.json").write_text('{"process": ')
    from dockyard import errdefs

    with pytest.raises(errdefs.InvalidArgument, match=r"config.json: invalid JSON: Expecting value: line 1"):
        oci._load_config(str(tmp_path))


@pytest.mark.parametrize("cid,ok", [("abc_1+2.3-x", True), ("é1", True), ("", False), (".", False), ("..", False),
                                    ("a/b", False), ("a\n", False), ("a b", False), ("~seccomp", False)])
def test_container_ids(tmp_path, cid, ok):
    from dockyard import errdefs

    if ok:
        oci.Container(str(tmp_path), cid)
    else:
        with pytest.raises(errdefs.InvalidArgument):
            oci.Container(str(tmp_path), cid)
