"""logfile across generations: .keep and .gz names, Tail with pins, and history handing over to a
follower without splitting a line. Files only: no containers, no root."""

import gzip
import os

from dockyard.runtime import logfile

T0 = 1795300492_000000000


def rec(ns, stream, tag, content):
    return logfile.rfc3339nano(ns).encode() + f" {stream} {tag} ".encode() + content + b"\n"


def write(path, *recs, mode="wb"):
    with open(path, mode) as f:
        f.write(b"".join(recs))


def lines(entries):
    return [e[1] for e in entries]


def test_generations_in_order_with_gz_and_keep(tmp_path):
    log = str(tmp_path / "c-json.log")
    with gzip.open(log + ".2.gz", "wb") as f:
        f.write(rec(T0 + 1, "stdout", "F", b"one"))
    write(log + ".1", rec(T0 + 2, "stdout", "F", b"two"))
    write(log + ".keep", rec(T0 + 3, "stdout", "P", b"thr"))  # replaced, not shifted in yet
    write(log, rec(T0 + 4, "stdout", "F", b"ee"))
    assert logfile.log_files(log) == [log + ".2.gz", log + ".1", log + ".keep", log]
    assert lines(logfile.read_entries(log)) == [b"one\n", b"two\n", b"three\n"]
    # .keep naming the current file is the keeper's second name, not a generation
    os.unlink(log + ".keep")
    os.link(log, log + ".keep")
    assert logfile.log_files(log) == [log + ".2.gz", log + ".1", log]


def test_very_long_lines_come_out_in_pieces(tmp_path):
    log = str(tmp_path / "c.log")
    chunk = b"x" * 8192
    n = logfile.MAX_LINE // len(chunk) + 3
    write(log, *[rec(T0, "stdout", "P", chunk) for _ in range(n)], rec(T0, "stdout", "F", b"end"))
    got = lines(logfile.read_entries(log))
    assert b"".join(got) == chunk * n + b"end\n"
    assert len(got) == 2 and len(got[0]) == logfile.MAX_LINE  # nothing buffers more than MAX_LINE


def test_history_hands_an_unfinished_line_to_the_follower(tmp_path):
    log = str(tmp_path / "c.log")
    write(log, rec(T0, "stdout", "F", b"a"), rec(T0 + 1, "stdout", "P", b"hal"), b"2026-11-21T22:34:52Z stdout F par")
    f = open(log, "rb")
    st = os.fstat(f.fileno())
    carry = logfile.Joiner()
    assert lines(logfile.read_entries(log, upto=(st.st_ino, st.st_size), carry=carry)) == [b"a\n"]
    # the follower starts after the last complete record, with the partial line pending
    assert carry.offset == len(rec(T0, "stdout", "F", b"a") + rec(T0 + 1, "stdout", "P", b"hal"))
    f.seek(carry.offset)
    t = logfile.Tail(f, log, logfile.Pins(), carry)
    assert t.read() == [] and t.eof
    write(log, b"\n", mode="ab")  # conmon finishes writing the torn record
    assert lines(t.read()) == [b"halpar\n"]
    t.close()


def test_tail_reads_each_pinned_generation_to_its_end(tmp_path):
    log = str(tmp_path / "c.log")
    write(log, rec(T0, "stdout", "F", b"g1-a"))
    pins = logfile.Pins()
    f = open(log, "rb")
    pins.push(open(log, "rb"))  # the generation we already read, pinned before we opened it
    t = logfile.Tail(f, log, pins)
    assert lines(t.read()) == [b"g1-a\n"]
    # conmon: last write to g1, then g2 renamed in; the keeper pins g2 (and g3 after it)
    write(log, rec(T0 + 1, "stdout", "P", b"split-"), mode="ab")
    os.rename(log, log + ".old")
    write(log, rec(T0 + 2, "stdout", "F", b"across"), rec(T0 + 3, "stderr", "F", b"g2"))
    pins.push(open(log, "rb"))
    os.rename(log, log + ".old2")
    write(log, rec(T0 + 4, "stdout", "F", b"g3"))
    pins.push(open(log, "rb"))
    os.unlink(log + ".old2")  # rotated away: the pinned file still reads
    assert lines(t.read()) == [b"split-across\n", b"g2\n", b"g3\n"] and t.eof
    t.close()


def test_pins_cap_drops_oldest(tmp_path):
    pins = logfile.Pins(cap=2)
    files = []
    for i in range(3):
        write(str(tmp_path / f"g{i}"), b"")
        files.append(open(tmp_path / f"g{i}", "rb"))
        pins.push(files[-1])
    assert pins.dropped == 1 and files[0].closed
    assert pins.pop() is files[1] and pins.pop() is files[2] and pins.pop() is None
