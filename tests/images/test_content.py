"""Content store: verified writes, verified reads, idempotence, concurrent writers."""

import hashlib
import io
import os
import threading

import pytest

from dockyard.errdefs import InvalidArgument, NotFound
from dockyard.images.content import ContentStore, DigestMismatch


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def cs(tmpdir_clean):
    return ContentStore(tmpdir_clean)


def test_write_read_roundtrip(cs):
    d = cs.write(b"hello")
    assert d == digest(b"hello")
    assert cs.read(d) == b"hello"
    assert cs.size(d) == 5
    assert os.listdir(cs.tmp_dir) == []


def test_write_is_idempotent(cs):
    assert cs.write(b"x") == cs.write(b"x")
    assert cs.list() == [digest(b"x")]


def test_expected_digest_and_size_are_checked(cs):
    with pytest.raises(DigestMismatch):
        cs.write(b"hello", expected=digest(b"other"))
    with pytest.raises(DigestMismatch):
        cs.write_stream(io.BytesIO(b"hello"), expected_size=4)
    assert cs.list() == [] and os.listdir(cs.tmp_dir) == []


def test_corrupted_blob_is_detected_on_read(cs):
    d = cs.write(b"precious bytes")
    with open(cs.path(d), "r+b") as f:
        f.write(b"P")
    with pytest.raises(DigestMismatch, match="corrupt"):
        cs.read(d)
    with pytest.raises(DigestMismatch):
        cs.verify(d)


def test_bad_digest_strings_and_missing_blobs(cs):
    for bad in ("sha256:xyz", "md5:" + "a" * 32, "sha256:" + "A" * 64, "../../etc/passwd"):
        with pytest.raises(InvalidArgument):
            cs.path(bad)
    with pytest.raises(NotFound):
        cs.read(digest(b"never written"))


def test_concurrent_writers_of_the_same_blob(cs):
    data = os.urandom(3 << 20)
    errors = []

    def writer():
        try:
            cs.write_stream(io.BytesIO(data), expected=digest(data))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert cs.read(digest(data)) == data
    assert os.listdir(cs.tmp_dir) == []
