"""Table tests of the registry's pure pieces: auth header and scope parsing, tokens, challenges,
platform selection, pagination."""

import base64
import hashlib
import time

import pytest

from dockyard.errdefs import InvalidArgument, NotFound
from dockyard.registry import auth, client, server


@pytest.mark.parametrize("header,want", [
    ("Basic " + base64.b64encode(b"u:p:w").decode(), ("u", "p:w")),
    ("basic " + base64.b64encode(b"u:").decode(), ("u", "")),
    ("Basic " + base64.b64encode(b"nocolon").decode(), None),
    ("Basic !!!", None),
    ("Bearer abc", None),
    ("", None),
    (None, None),
])
def test_parse_basic(header, want):
    assert auth.parse_basic(header) == want


@pytest.mark.parametrize("scope,want", [
    ("repository:a/b:pull,push", ("repository", "a/b", {"pull", "push"})),
    ("registry:catalog:*", ("registry", "catalog", {"*"})),
    ("repository:x:", ("repository", "x", set())),
    ("nonsense", None),
])
def test_parse_scope(scope, want):
    assert auth.parse_scope(scope) == want


def test_tokens():
    secret = b"k" * 32
    tok = auth.issue_token(secret, "alice", [{"type": "repository", "name": "a", "actions": ["pull"]}])
    claims = auth.check_token(secret, tok)
    assert claims["sub"] == "alice"
    assert auth.token_allows(claims, "repository", "a", "pull")
    assert not auth.token_allows(claims, "repository", "a", "push")
    assert not auth.token_allows(claims, "repository", "b", "pull")
    assert auth.check_token(b"other" * 8, tok) is None
    body, sig = tok.split(".")
    assert auth.check_token(secret, body[:-2] + "xx." + sig) is None
    assert auth.check_token(secret, "garbage") is None
    expired = auth.issue_token(secret, "alice", [], ttl=-1)
    assert auth.check_token(secret, expired) is None and time.time()


def test_htpasswd(tmp_path):
    import bcrypt

    h = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    p = tmp_path / "h"
    p.write_text(f"# comment\n\nbob:{h.replace('$2b$', '$2y$')}\n")
    users = auth.load_htpasswd(str(p))
    assert auth.check_password(users, "bob", "pw")
    assert not auth.check_password(users, "bob", "wrong")
    assert not auth.check_password(users, "eve", "pw")
    p.write_text("bob:{SHA}abc\n")
    with pytest.raises(InvalidArgument, match="htpasswd -B"):
        auth.load_htpasswd(str(p))


@pytest.mark.parametrize("header,want", [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
     ("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                 "scope": "repository:library/busybox:pull"})),
    ('Basic realm="x"', ("basic", {"realm": "x"})),
    ("", ("", {})),
])
def test_parse_challenge(header, want):
    assert client._parse_challenge(header) == want


def _desc(arch, variant=None):
    p = {"os": "linux", "architecture": arch}
    if variant:
        p["variant"] = variant
    digest = "sha256:" + hashlib.sha256(f"{arch}/{variant}".encode()).hexdigest()
    return {"mediaType": client.MT_OCI_MANIFEST, "digest": digest, "size": 10, "platform": p}


def test_select_platform():
    index = {"manifests": [_desc("arm", "v6"), _desc("arm", "v7"), _desc("amd64")]}
    assert client.select_platform(index, {"os": "linux", "architecture": "amd64"})["platform"]["architecture"] == "amd64"
    assert client.select_platform(index, {"os": "linux", "architecture": "arm", "variant": "v7"})["platform"]["variant"] == "v7"
    with pytest.raises(NotFound, match="linux/riscv64"):
        client.select_platform(index, {"os": "linux", "architecture": "riscv64"})
    with pytest.raises(InvalidArgument):
        client._parse_platform("linux")
    assert client._parse_platform("linux/arm64/v8") == {"os": "linux", "architecture": "arm64", "variant": "v8"}


@pytest.mark.parametrize("query,want", [
    ({}, (["a", "b", "c"], None)),
    ({"n": "2"}, (["a", "b"], "b")),
    ({"n": "3"}, (["a", "b", "c"], None)),
    ({"n": "2", "last": "a"}, (["b", "c"], None)),
    ({"last": "b"}, (["c"], None)),
    ({"n": "0"}, ([], None)),
])
def test_pagination(query, want):
    assert server._page(["a", "b", "c"], query) == want


def test_loopback_detection():
    for host in ("localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000", "localhost"):
        assert client._is_loopback(host), host
    for host in ("registry.example.com", "10.0.0.1:5000", "localhost.example.com:5000", "[2001:db8::1]:5000"):
        assert not client._is_loopback(host), host
