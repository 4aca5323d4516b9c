"""conmon k8s-file log parsing: table tests for the pure parts, files for history and follow."""

import asyncio
import os

import pytest

from dockyard.runtime import logfile

T0 = 1795300492_000000000  # 2026-11-21T22:34:52Z


@pytest.mark.parametrize("ts, ns", [
    (b"2026-11-21T22:34:52Z", T0),
    (b"2026-11-21T22:34:52.5Z", T0 + 500_000_000),
    (b"2026-11-21T22:34:52.123456789+00:00", T0 + 123456789),
    (b"2026-11-22T00:34:52.000000001+02:00", T0 + 1),
    (b"2026-11-21T20:34:52.1-02:00", T0 + 100_000_000),
    (b"1970-01-01T00:00:00Z", 0),
])
def test_parse_time(ts, ns):
    assert logfile.parse_time(ts) == ns


@pytest.mark.parametrize("bad", [b"", b"yesterday", b"2026-11-21 22:34:52Z", b"2026-11-21T22:34:52",
                                 b"2026-11-21T22:34:52.Z", b"2026-11-21T22:34:52.1234567891Z",
                                 b"2026-11-21T22:34:52+0200"])
def test_parse_time_rejects(bad):
    with pytest.raises(ValueError):
        logfile.parse_time(bad)


@pytest.mark.parametrize("ns, text", [
    (T0, "2026-11-21T22:34:52Z"), (T0 + 500_000_000, "2026-11-21T22:34:52.5Z"),
    (T0 + 123456789, "2026-11-21T22:34:52.123456789Z"),
])
def test_rfc3339nano_round_trip(ns, text):
    assert logfile.rfc3339nano(ns) == text
    assert logfile.parse_time(text.encode()) == ns


@pytest.mark.parametrize("line, rec", [
    (b"2026-11-21T22:34:52Z stdout F hello\n", (T0, "stdout", False, b"hello")),
    (b"2026-11-21T22:34:52Z stderr P par", (T0, "stderr", True, b"par")),
    (b"2026-11-21T22:34:52Z stdout F \n", (T0, "stdout", False, b"")),
    (b"2026-11-21T22:34:52Z stdout F\n", (T0, "stdout", False, b"")),  # empty line, no separator
    (b"2026-11-21T22:34:52Z stdout F  two  spaces \xff\n", (T0, "stdout", False, b" two  spaces \xff")),
])
def test_parse_record(line, rec):
    assert tuple(logfile.parse_record(line)) == rec


@pytest.mark.parametrize("bad", [b"", b"garbage\n", b"2026-11-21T22:34:52Z stdin F x\n",
                                 b"2026-11-21T22:34:52Z stdout X x\n", b"notatime stdout F x\n"])
def test_parse_record_rejects(bad):
    with pytest.raises(ValueError):
        logfile.parse_record(bad)


def test_joiner_joins_partials_per_stream():
    j = logfile.Joiner()
    R = logfile.Record
    assert j.feed(R(1, "stdout", True, b"ab")) is None
    assert j.feed(R(2, "stderr", False, b"err")) == ("stderr", b"err\n", 2)
    assert j.feed(R(3, "stdout", True, b"cd")) is None
    assert j.feed(R(4, "stdout", False, b"ef")) == ("stdout", b"abcdef\n", 1)
    assert j.feed(R(5, "stderr", True, b"tail")) is None
    assert j.flush() == [("stderr", b"tail", 5)]
    assert j.flush() == []


def _rec(ns, stream, tag, content):
    return logfile.rfc3339nano(ns).encode() + f" {stream} {tag} ".encode() + content + b"\n"


def _write(path, *recs, mode="wb"):
    with open(path, mode) as f:
        f.write(b"".join(recs))


def test_read_entries_history_filters_and_tail(tmp_path):
    log = str(tmp_path / "ctr.log")
    _write(log + ".2", _rec(T0 + 1, "stdout", "F", b"one"), _rec(T0 + 2, "stdout", "P", b"tw"))
    _write(log + ".1", _rec(T0 + 3, "stdout", "F", b"o"), _rec(T0 + 4, "stderr", "F", b"three"))
    _write(log, b"garbage that must be skipped\n", _rec(T0 + 5, "stdout", "F", b"four"),
           _rec(T0 + 6, "stdout", "P", b"unfinished"), b"2026-11-21T22:34:52Z stdout F half-writ")
    assert logfile.log_files(log) == [log + ".2", log + ".1", log]
    all_ = list(logfile.read_entries(log))
    assert all_ == [("stdout", b"one\n", T0 + 1), ("stdout", b"two\n", T0 + 2), ("stderr", b"three\n", T0 + 4),
                    ("stdout", b"four\n", T0 + 5), ("stdout", b"unfinished", T0 + 6)]
    assert [e[1] for e in logfile.read_entries(log, tail=2)] == [b"four\n", b"unfinished"]
    assert list(logfile.read_entries(log, tail=0)) == []
    assert [e[1] for e in logfile.read_entries(log, since_ns=T0 + 2, until_ns=T0 + 5)] == [
        b"two\n", b"three\n", b"four\n"]
    # end_offset: only what was there when the caller looked (then it follows from there).
    end = len(b"garbage that must be skipped\n") + len(_rec(T0 + 5, "stdout", "F", b"four"))
    assert [e[1] for e in logfile.read_entries(log, end_offset=end)][-1] == b"four\n"
    assert list(logfile.read_entries(str(tmp_path / "missing.log"))) == []


def test_follow_survives_rotation_and_drains_on_stop(tmp_path):
    log = str(tmp_path / "ctr.log")
    _write(log, _rec(T0, "stdout", "F", b"old"))
    start = logfile.current_offset(log)

    async def scenario():
        stop = asyncio.Event()
        got = []

        async def consume():
            async for e in logfile.follow(log, start, stop, poll=0.01):
                got.append(e[:2])

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        _write(log, _rec(T0 + 1, "stdout", "P", b"a"), mode="ab")
        await asyncio.sleep(0.05)
        _write(log, _rec(T0 + 2, "stdout", "F", b"b"), _rec(T0 + 3, "stderr", "F", b"before-rotate"), mode="ab")
        os.rename(log, log + ".1")  # rotated by rename; the writer continues in a new file
        _write(log, _rec(T0 + 4, "stdout", "F", b"after-rotate"), _rec(T0 + 5, "stdout", "P", b"last"))
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 5)
        return got

    got = asyncio.run(scenario())
    assert got == [("stdout", b"ab\n"), ("stderr", b"before-rotate\n"), ("stdout", b"after-rotate\n"),
                   ("stdout", b"last")]
