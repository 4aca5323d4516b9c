"""Isolation as a user sees it: capabilities, seccomp, read-only rootfs, users."""

import pytest
from e2e_util import ok

pytestmark = pytest.mark.privileged

DOCKER_DEFAULT_CAPS = 0xA80425FB  # Docker's 14 default capabilities


def _status_field(text: str, field: str) -> str:
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return line.split()[1]
    raise AssertionError(f"{field} not in {text!r}")


def _caps(d, *flags):
    out = ok(d.docker("run", "--rm", *flags, "busybox", "cat", "/proc/self/status"))
    return int(_status_field(out, "CapEff"), 16), int(_status_field(out, "CapBnd"), 16), out


def test_default_caps(clean_daemon):
    eff, bnd, _ = _caps(clean_daemon)
    assert eff == DOCKER_DEFAULT_CAPS and bnd == DOCKER_DEFAULT_CAPS, (hex(eff), hex(bnd))


def test_cap_drop_all(clean_daemon):
    eff, bnd, _ = _caps(clean_daemon, "--cap-drop", "ALL")
    assert eff == 0 and bnd == 0
    r = clean_daemon.docker("run", "--rm", "--cap-drop", "ALL", "busybox", "chown", "1", "/tmp")
    assert r.returncode != 0 and "Operation not permitted" in r.stderr


def test_cap_add(clean_daemon):
    eff, _, _ = _caps(clean_daemon, "--cap-add", "NET_ADMIN")
    assert eff == DOCKER_DEFAULT_CAPS | (1 << 12)  # CAP_NET_ADMIN = 12


def test_privileged(clean_daemon):
    with open("/proc/self/status") as f:
        host_bnd = int(_status_field(f.read(), "CapBnd"), 16)
    eff, _, out = _caps(clean_daemon, "--privileged")
    assert eff == host_bnd, (hex(eff), hex(host_bnd))
    assert _status_field(out, "Seccomp") == "0"


def test_seccomp_default_and_unconfined(clean_daemon):
    d = clean_daemon
    # Docker's default profile allows unshare(2) only with CAP_SYS_ADMIN: creating a user
    # namespace (which needs no capability) is the observable difference.
    _, _, out = _caps(d)
    assert _status_field(out, "Seccomp") == "2"
    blocked = d.docker("run", "--rm", "busybox", "unshare", "-U", "true")
    assert blocked.returncode != 0 and "Operation not permitted" in blocked.stderr, blocked.stderr
    _, _, out = _caps(d, "--security-opt", "seccomp=unconfined")
    assert _status_field(out, "Seccomp") == "0"
    ok(d.docker("run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "unshare", "-U", "true"))


def test_no_new_privileges_default_off_and_flag(clean_daemon):
    _, _, out = _caps(clean_daemon, "--security-opt", "no-new-privileges")
    assert _status_field(out, "NoNewPrivs") == "1"


def test_read_only_rootfs(clean_daemon):
    d = clean_daemon
    r = d.docker("run", "--rm", "--read-only", "busybox", "touch", "/x")
    assert r.returncode != 0 and "Read-only file system" in r.stderr, r.stderr
    ok(d.docker("run", "--rm", "busybox", "touch", "/x"))  # writable without the flag


@pytest.mark.parametrize("user,uid_gid,groups", [
    ("65534", "uid=65534(nobody) gid=65534(nogroup)", None),
    ("www-data", "uid=33(www-data) gid=33(www-data)", {"33", "50"}),  # staff lists www-data
    ("1234:5678", "uid=1234 gid=5678", None),
])
def test_user(clean_daemon, user, uid_gid, groups):
    out = ok(clean_daemon.docker("run", "--rm", "-u", user, "busybox", "sh", "-c", "id; id -G"))
    ident, gids = out.splitlines()
    assert ident.startswith(uid_gid), ident
    if groups:
        assert set(gids.split()) == groups, gids


def test_unknown_user_fails(clean_daemon):
    r = clean_daemon.docker("run", "--rm", "-u", "nosuchuser", "busybox", "id")
    assert r.returncode != 0 and "nosuchuser" in r.stderr, (r.returncode, r.stderr)


def test_namespaces_are_private(clean_daemon):
    out = ok(clean_daemon.docker("run", "--rm", "--hostname", "box1", "busybox", "sh", "-c",
                                 "hostname; echo $$; ls /proc | grep -c '^[0-9]'"))
    host, pid, nprocs = out.split()
    assert host == "box1" and pid == "1" and int(nprocs) <= 3
