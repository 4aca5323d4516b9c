"""Reference parsing: the table Docker's distribution/reference tests encode."""

import pytest

from dockyard.errdefs import InvalidArgument
from dockyard.images import reference

H = "a" * 64

GOOD = [
    # input, normalised, familiar
    ("busybox", "docker.io/library/busybox", "busybox"),
    ("busybox:latest", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36.1-glibc", "docker.io/library/busybox:1.36.1-glibc", "busybox:1.36.1-glibc"),
    ("library/busybox", "docker.io/library/busybox", "busybox"),
    ("docker.io/library/busybox:1", "docker.io/library/busybox:1", "busybox:1"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox", "busybox"),
    ("user/app", "docker.io/user/app", "user/app"),
    ("user/app/sub:v2", "docker.io/user/app/sub:v2", "user/app/sub:v2"),
    ("localhost/x", "localhost/x", "localhost/x"),
    ("localhost:5000/x:1", "localhost:5000/x:1", "localhost:5000/x:1"),
    ("registry.example.com/a/b", "registry.example.com/a/b", "registry.example.com/a/b"),
    ("Registry.Example.com:443/a", "Registry.Example.com:443/a", "Registry.Example.com:443/a"),
    ("Foo/bar", "Foo/bar", "Foo/bar"),  # uppercase first component = a domain
    ("[::1]:5000/a:t", "[::1]:5000/a:t", "[::1]:5000/a:t"),
    ("a_b.c-d__e---f", "docker.io/library/a_b.c-d__e---f", "a_b.c-d__e---f"),
    ("busybox:Tag_UP", "docker.io/library/busybox:Tag_UP", "busybox:Tag_UP"),
    (f"busybox@sha256:{H}", f"docker.io/library/busybox@sha256:{H}", f"busybox@sha256:{H}"),
    (f"busybox:1@sha256:{H}", f"docker.io/library/busybox:1@sha256:{H}", f"busybox:1@sha256:{H}"),
]

BAD = [
    ("", "at least one component"),
    ("UPPER", "must be lowercase"),
    ("user/App", "must be lowercase"),
    ("busybox:", "invalid reference format"),
    (":latest", "invalid reference format"),
    ("busybox:-x", "invalid reference format"),
    ("busybox:" + "t" * 129, "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("a/", "invalid reference format"),
    ("_a", "invalid reference format"),
    ("a-", "invalid reference format"),
    ("a..b", "invalid reference format"),
    ("a@sha256:abc", "invalid reference format"),
    ("a@sha256:" + "a" * 63, "invalid reference format"),
    ("a b", "invalid reference format"),
    (H, "cannot specify 64-byte hexadecimal strings"),
    ("x/" + "a" * 260, "more than 255 characters"),
]


@pytest.mark.parametrize("s,normal,fam", GOOD)
def test_parse_good(s, normal, fam):
    r = reference.parse(s)
    assert str(r) == normal
    assert r.familiar() == fam


@pytest.mark.parametrize("s,msg", BAD)
def test_parse_bad(s, msg):
    with pytest.raises(InvalidArgument, match=msg):
        reference.parse(s)


def test_default_tag_only_without_tag_or_digest():
    assert str(reference.parse_docker_ref("busybox")) == "docker.io/library/busybox:latest"
    assert str(reference.parse_docker_ref("busybox:1")) == "docker.io/library/busybox:1"
    assert reference.parse_docker_ref(f"busybox@sha256:{H}").tag is None


def test_repo_and_separate_tag():
    assert reference.parse_repo_tag("busybox", "2").familiar() == "busybox:2"
    assert reference.parse_repo_tag("localhost:5000/x", None).familiar() == "localhost:5000/x:latest"
    with pytest.raises(InvalidArgument):
        reference.parse_repo_tag("busybox", "bad tag")


def test_familiar_of_nested_library_path_keeps_library():
    assert reference.parse("docker.io/library/a/b").familiar() == "library/a/b"


def test_fuzz_parse_only_raises_invalid_argument_and_roundtrips():
    import random
    rng = random.Random(1234)
    alphabet = "abcAB09:/@._-[]" + "sha256"
    for _ in range(20000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        try:
            r = reference.parse(s)
        except InvalidArgument:
            continue
        assert reference.parse(str(r)) == r
        assert reference.parse(r.familiar()) == r
