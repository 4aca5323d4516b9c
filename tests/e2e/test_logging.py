"""Logging drivers end to end, with the real docker CLI and docker-py against the daemon.

json-file rotation under a 1 GiB flood with a follower, none, local (compressed generations),
syslog to UDP and unixgram receivers the tests start, non-blocking mode, and a daemon kill -9
while a syslog container runs. Receivers live on loopback or in a temp dir.
"""

import glob
import os
import re
import socket
import threading
import time

import pytest

from dockyard import errdefs
from dockyard.engine import logdrivers
from e2e_util import ok, poll



def log_path(daemon, name):
    return ok(daemon.docker("inspect", "-f", "{{.LogPath}}", name)).strip()


def local_log_path(daemon, name):
    """The local driver's file, which moby keeps out of LogPath (not an API): where ours lives."""
    cid = ok(daemon.docker("inspect", "-f", "{{.Id}}", name)).strip()
    return os.path.join(daemon.data_root, "containers", cid, cid + "-json.log")


def log_files(daemon, name):
    """The log generations on disk (``.keep``, the keeper's second name of the current file, left out)."""
    cid = ok(daemon.docker("inspect", "-f", "{{.Id}}", name)).strip()
    return sorted(f for f in glob.glob(os.path.join(daemon.data_root, "containers", cid, cid + "-json.log*"))
                  if not f.endswith(".keep"))


def disk_use(base):
    """Bytes of the log files under ``base``, each inode once (hard links share their blocks)."""
    sizes = {}
    for f in glob.glob(base + "*"):
        try:
            st = os.stat(f)
        except FileNotFoundError:
            continue
        sizes[st.st_ino] = st.st_size
    return sum(sizes.values())


def pinned_bytes(pid, base):
    """Bytes of rotated-away log generations the daemon still holds open for a lagging follower."""
    total = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith(base) and target.endswith("(deleted)"):
                total += os.stat(f"/proc/{pid}/fd/{fd}").st_size
        except OSError:
            pass
    return total


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def wait_exit(daemon, name, timeout=60):
    return int(ok(daemon.docker("wait", name, timeout=timeout)).strip())


def numbers(text, width=None):
    """The line numbers in ``docker logs`` output. The oldest kept generation may begin with the
    end of a line whose start was rotated away (conmon splits lines at its 8 KiB reads): dropped."""
    lines = text.splitlines()
    if width:
        lines = lines[1:] if lines and len(lines[0]) != width else lines
        return [int(line[:7]) for line in lines]
    nums = [int(line.split()[0]) for line in lines]
    return nums[1:] if len(nums) > 1 and nums[0] + 1 != nums[1] else nums


def paced(first, last):
    """A shell loop writing numbered lines of ~80 bytes at a few MB/s. Generations of 100 KiB
    then last tens of ms; a full-speed flood can fill two of them before the keeper thread runs,
    and that generation is lost (engine/logs.py), which is not what these tests are about."""
    return (f"i={first}; while [ $i -le {last} ]; do echo \"$i {'0' * 70}\"; i=$((i+1)); "
            "[ $((i % 200)) -eq 0 ] && usleep 5000; done; true")


@pytest.mark.privileged
def test_json_file_rotation_keeps_bounded_contiguous_tail(clean_daemon, name):
    d = clean_daemon
    # 20000 numbered lines of ~80 bytes: ~2.5 MB of records, far more than 3 x 100k.
    ok(d.docker("run", "--name", name, "--log-opt", "max-size=100k", "--log-opt", "max-file=3", "busybox",
                "sh", "-c", paced(1, 20000)))
    files = log_files(d, name)
    base = log_path(d, name)
    assert sorted(os.path.basename(f) for f in files) == sorted(
        os.path.basename(base) + s for s in ("", ".1", ".2")), files
    assert all(os.path.getsize(f) <= 100 * 1024 for f in files)
    nums = numbers(ok(d.docker("logs", name)))
    assert nums[-1] == 20000 and nums == list(range(nums[0], 20001)), "not a contiguous tail"
    assert len(nums) > 1000
    # --tail and timestamps work across the generations
    assert ok(d.docker("logs", "--tail", "2", name)).split()[::2] == ["19999", "20000"]


@pytest.mark.privileged
def test_size_cap_holds_while_the_daemon_is_down(clean_daemon, name, tmp_path):
    """conmon enforces max-size itself: with no daemon, the current file stays under it; the
    generations replaced meanwhile are lost, the ones the keeper had linked are kept."""
    d = clean_daemon
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    script = ("wait_for() { while [ ! -e /ctl/$1 ]; do usleep 20000; done; }; "
              "echo 0; wait_for go; awk 'BEGIN{for(i=1;i<=20000;i++) printf \"%d %070d\\n\", i, 0}'; "
              "touch /ctl/wrote; wait_for more; " + paced(20001, 30000))
    ok(d.docker("run", "-d", "--name", name, "-v", f"{ctl}:/ctl", "--log-opt", "max-size=100k",
                "--log-opt", "max-file=3", "busybox", "sh", "-c", script))
    base = log_path(d, name)
    assert poll(lambda: os.path.exists(base) and os.path.getsize(base) > 0)
    d.stop(kill9=True)
    try:
        (ctl / "go").touch()
        assert poll(lambda: (ctl / "wrote").exists(), timeout=30)
        sizes = {f: os.path.getsize(f) for f in glob.glob(base + "*")}
        assert all(v <= 100 * 1024 for v in sizes.values()), sizes
        assert disk_use(base) <= 5 * 100 * 1024  # log, .1, .2, the keeper's .keep and .next
    finally:
        d.start()
    (ctl / "more").touch()
    assert wait_exit(d, name) == 0
    nums = numbers(ok(d.docker("logs", name)))
    assert nums[-1] == 30000 and nums == list(range(nums[0], 30001))
    assert {f[len(base):] for f in log_files(d, name)} == {"", ".1", ".2"}


@pytest.mark.privileged
def test_logs_of_a_restarted_container_keep_earlier_runs(clean_daemon, name):
    d = clean_daemon
    for opts in ([], ["--log-opt", "max-size=1m", "--log-opt", "max-file=2"]):
        n = f"{name}-{len(opts)}"
        ok(d.docker("run", "--name", n, *opts, "busybox", "echo", "run"))
        ok(d.docker("start", "-a", n))
        assert ok(d.docker("logs", n)) == "run\nrun\n", opts


@pytest.mark.privileged
def test_none_driver_writes_nothing_and_refuses_reading(clean_daemon, name):
    d = clean_daemon
    r = d.docker("run", "--name", name, "--log-driver", "none", "busybox", "echo", "hello")
    assert r.returncode == 0 and r.stdout == "hello\n"  # attach still works
    cid = ok(d.docker("inspect", "-f", "{{.Id}}", name)).strip()
    cdir = os.path.join(d.data_root, "containers", cid)
    assert not [f for f in os.listdir(cdir) if ".log" in f]
    r = d.docker("logs", name)
    assert r.returncode != 0 and "configured logging driver does not support reading" in r.stderr
    assert ok(d.docker("inspect", "-f", "{{.HostConfig.LogConfig.Type}}", name)).strip() == "none"
    import docker
    with pytest.raises(docker.errors.APIError) as e:  # moby's NotImplemented
        d.api().api.logs(name)
    assert e.value.status_code == 501
    # LogPath is moby's json-file path, empty for every other driver.
    assert ok(d.docker("inspect", "-f", "{{.LogPath}}", name)).strip() == ""


@pytest.mark.privileged
def test_local_driver_compresses_rotated_files_and_reads_them(clean_daemon, name):
    d = clean_daemon
    ok(d.docker("run", "--name", name, "--log-driver", "local", "--log-opt", "max-size=64k",
                "--log-opt", "max-file=4", "busybox", "sh", "-c", paced(1, 8000)))
    assert log_path(d, name) == ""
    base = local_log_path(d, name)
    # The keeper gzips in a worker thread: wait for the rotated files to become .gz.
    names = poll(lambda: (lambda n: n if n == {"", ".1.gz", ".2.gz", ".3.gz"} else None)(
        {f[len(base):] for f in log_files(d, name)}), timeout=10)
    assert names == {"", ".1.gz", ".2.gz", ".3.gz"}, log_files(d, name)
    nums = numbers(ok(d.docker("logs", name)))
    assert nums[-1] == 8000 and nums == list(range(nums[0], 8001)) and len(nums) > 1000
    # docker-py reads the same through the API
    out = d.api().containers.get(name).logs(tail=3).decode().split()
    assert out[::2] == ["7998", "7999", "8000"]


@pytest.mark.privileged
@pytest.mark.parametrize("args, message", [
    (["--log-driver", "bogus"], "logger: no log driver named 'bogus' is registered"),
    (["--log-opt", "foo=bar"], "unknown log opt 'foo' for json-file log driver"),
    (["--log-driver", "local", "--log-opt", "labels=x"], "unknown log opt 'labels' for log driver local"),
    (["--log-driver", "syslog", "--log-opt", "max-size=1m"], "unknown log opt 'max-size' for syslog log driver"),
    (["--log-opt", "max-buffer-size=4m"], "max-buffer-size option is only supported with 'mode=non-blocking'"),
    (["--log-opt", "mode=fast"], "logger: logging mode not supported: fast"),
    (["--log-opt", "max-file=3"], "max-file cannot be set without max-size"),
    (["--log-driver", "syslog", "--log-opt", "syslog-address=ftp://x"], "unsupported scheme: 'ftp'"),
    (["--log-driver", "syslog", "--log-opt", "syslog-facility=nope"], "invalid syslog facility"),
    (["--log-driver", "syslog", "--log-opt", "syslog-format=xml"], "Invalid syslog format: xml"),
])
def test_log_options_are_validated_at_create(clean_daemon, name, args, message):
    d = clean_daemon
    r = d.docker("create", "--name", name, *args, "busybox", "true")
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert d.docker("inspect", name).returncode != 0  # nothing left behind


@pytest.mark.privileged
@pytest.mark.slow
def test_flood_1gib_follower_gets_every_line_memory_and_disk_bounded(clean_daemon, name):
    """1 GiB of numbered 1 KiB lines with max-size=10m max-file=3, followed by `docker logs -f`."""
    d = clean_daemon
    n_lines = 1 << 20
    script = ('echo ready; while [ ! -e /tmp/go ]; do sleep 0.05; done; '
              'awk \'BEGIN{p=sprintf("%1016s",""); gsub(/ /,"x",p); for(i=1;i<=' + str(n_lines) +
              ';i++) printf "%07d %s\\n", i, p}\'')
    ok(d.docker("run", "-d", "--name", name, "--log-opt", "max-size=10m", "--log-opt", "max-file=3",
                "busybox", "sh", "-c", script))
    base = log_path(d, name)
    rss0 = rss_kib(d.pid)
    peaks = {"rss": rss0, "disk": 0, "pinned": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            peaks["rss"] = max(peaks["rss"], rss_kib(d.pid))
            peaks["disk"] = max(peaks["disk"], disk_use(base))
            peaks["pinned"] = max(peaks["pinned"], pinned_bytes(d.pid, base))
            time.sleep(0.02)

    follower = d.popen("docker", "logs", "-f", name)
    sampler = threading.Thread(target=sample)
    sampler.start()
    state = {"next": 1, "bad": None, "bytes": 0}
    try:
        first = follower.stdout.readline()
        assert first == b"ready\n", first
        t0 = time.monotonic()
        ok(d.docker("exec", name, "touch", "/tmp/go"))
        for line in follower.stdout:
            state["bytes"] += len(line)
            num = int(line[:7])
            if num != state["next"] or len(line) != 1025:
                state["bad"] = (state["next"], line[:40], len(line))
                break
            state["next"] += 1
        elapsed = time.monotonic() - t0
    finally:
        follower.kill()
        follower.wait()
        done.set()
        sampler.join()
    assert state["bad"] is None, f"expected line {state['bad'][0]}, got {state['bad'][1:]}"
    assert state["next"] == n_lines + 1, f"follower stopped at line {state['next']}"
    assert wait_exit(d, name) == 0
    grew = peaks["rss"] - rss0
    print(f"\nflood: {state['bytes'] / 2**20:.0f} MiB in {elapsed:.1f} s "
          f"({state['bytes'] / 2**20 / elapsed:.0f} MiB/s); daemon RSS {rss0} KiB -> peak {peaks['rss']} KiB; "
          f"log files peak {peaks['disk'] / 2**20:.1f} MiB, "
          f"rotated-away generations held for the follower peak {peaks['pinned'] / 2**20:.0f} MiB")
    assert grew < 64 * 1024, f"daemon RSS grew by {grew} KiB"
    # 3 generations of 10 MiB, plus one more while conmon's new file is not yet shifted in.
    assert peaks["disk"] <= 4 * 10 * 2**20 + 2**20, peaks["disk"]
    # A follower slower than the writer holds the generations it has not read yet, up to
    # PIN_BUDGET (1 GiB) per follower (engine/logs.py).
    assert peaks["pinned"] <= 2**30 + 10 * 2**20
    nums = numbers(ok(d.docker("logs", name, timeout=120)), width=1024)
    assert nums[-1] == n_lines and nums == list(range(nums[0], n_lines + 1)), "left files not a contiguous tail"
    assert len(nums) * 1025 > 15 * 2**20  # more than one generation kept


# ---- syslog -------------------------------------------------------------------------------------

class Receiver:
    """A syslog receiver the test owns: UDP on loopback or unixgram in a temp dir; a thread
    collects datagrams (``read=False`` leaves them queued, a receiver that does not keep up)."""

    def __init__(self, kind, tmp_path=None, read=True):
        if kind == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self.sock.bind(("127.0.0.1", 0))
            self.address = f"udp://127.0.0.1:{self.sock.getsockname()[1]}"
        else:
            path = str(tmp_path / "log.sock")
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind(path)
            self.address = f"unixgram://{path}"
        self.got = []
        self._stop = threading.Event()
        self._thread = None
        if read:
            self.start()

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                self.got.append(self.sock.recv(65536))
            except socket.timeout:
                pass
            except OSError:
                return

    def wait_for(self, n, timeout=30):
        return poll(lambda: len(self.got) >= n, timeout=timeout)

    def close(self):
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.sock.close()


@pytest.fixture
def receivers(tmp_path):
    made = []

    def make(kind, read=True):
        r = Receiver(kind, tmp_path, read)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.mark.privileged
def test_syslog_udp_rfc5424_facility_and_tag(clean_daemon, name, receivers):
    d = clean_daemon
    r = receivers("udp")
    ok(d.docker("run", "--name", name, "--log-driver", "syslog", "--log-opt", f"syslog-address={r.address}",
                "--log-opt", "syslog-facility=local3", "--log-opt", "syslog-format=rfc5424",
                "--log-opt", "tag={{.Name}}/{{.ImageName}}/{{.ID}}", "busybox",
                "sh", "-c", "echo to-stdout; echo to-stderr >&2"))
    assert r.wait_for(2), r.got
    cid = ok(d.docker("inspect", "-f", "{{.Id}}", name)).strip()
    tag = f"{name}/busybox/{cid[:12]}"
    host = socket.gethostname()
    msgs = sorted(m.decode() for m in r.got)
    # local3 = 19: stdout is info (19*8+6), stderr err (19*8+3); Docker's APP-NAME and MSGID are the tag.
    pat = r"<(\d+)>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (\S+) (\S+) (\d+) (\S+) - (.*)\n"
    parsed = sorted(re.fullmatch(pat, m).groups() for m in msgs)
    assert parsed == sorted([("155", host, tag, str(d.pid), tag, "to-stderr"),
                             ("158", host, tag, str(d.pid), tag, "to-stdout")]), msgs
    # dual logging: `docker logs` reads the local cache
    r2 = d.docker("logs", name)
    assert r2.stdout == "to-stdout\n" and r2.stderr == "to-stderr\n"


@pytest.mark.privileged
def test_syslog_unixgram_default_format_and_tag(clean_daemon, name, receivers):
    d = clean_daemon
    r = receivers("unixgram")
    ok(d.docker("run", "--name", name, "--log-driver", "syslog", "--log-opt", f"syslog-address={r.address}",
                "busybox", "echo", "hello syslog"))
    assert r.wait_for(1), r.got
    cid = ok(d.docker("inspect", "-f", "{{.Id}}", name)).strip()
    # Docker's default: the local form, facility daemon (3*8+6), tag {{.ID}}, no hostname.
    assert re.fullmatch(rf"<30>[A-Z][a-z]{{2}} [ \d]\d \d\d:\d\d:\d\d {cid[:12]}\[{d.pid}\]: hello syslog\n",
                        r.got[0].decode()), r.got
    # rfc3164 adds the hostname
    r3 = receivers("udp")
    ok(d.docker("run", "--rm", "--log-driver", "syslog", "--log-opt", f"syslog-address={r3.address}",
                "--log-opt", "syslog-format=rfc3164", "--log-opt", "tag=fixed", "busybox", "echo", "x"))
    assert r3.wait_for(1)
    assert re.fullmatch(rf"<30>\w{{3}} [ \d]\d \d\d:\d\d:\d\d {re.escape(socket.gethostname())} fixed\[{d.pid}\]: x\n",
                        r3.got[0].decode()), r3.got


@pytest.mark.privileged
def test_syslog_tcp_stream_newline_framed(clean_daemon, name):
    d = clean_daemon
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(30)
    try:
        ok(d.docker("run", "--name", name, "--log-driver", "syslog", "--log-opt",
                    f"syslog-address=tcp://127.0.0.1:{srv.getsockname()[1]}", "--log-opt", "syslog-format=rfc5424micro",
                    "--log-opt", "tag=tcp", "busybox", "sh", "-c", "echo one; echo two"))
        conn, _ = srv.accept()
        conn.settimeout(30)
        data = b""
        while data.count(b"\n") < 2:
            chunk = conn.recv(65536)
            assert chunk, data
            data += chunk
        conn.close()
    finally:
        srv.close()
    msgs = data.decode().splitlines()
    assert [m.rsplit(" - ", 1)[1] for m in msgs] == ["one", "two"]
    assert all(re.match(r"<30>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z \S+ tcp \d+ tcp - ", m) for m in msgs), msgs


@pytest.mark.privileged
def test_syslog_non_blocking_drops_and_counts_when_receiver_lags(clean_daemon, name, receivers):
    """A unixgram receiver that reads nothing: in non-blocking mode the container still writes
    its 4 MB and exits (it never waited on the driver); what did not fit in the buffer is
    dropped and counted; the rest arrives once the receiver reads."""
    d = clean_daemon
    r = receivers("unixgram", read=False)
    total = 40000
    ok(d.docker("run", "--name", name, "--log-driver", "syslog", "--log-opt", f"syslog-address={r.address}",
                "--log-opt", "mode=non-blocking", "--log-opt", "max-buffer-size=256k", "busybox",
                "awk", f'BEGIN{{for(i=1;i<={total};i++) printf "%d %090d\\n", i, 0}}'))
    cid = ok(d.docker("inspect", "-f", "{{.Id}}", name)).strip()
    cursor = os.path.join(d.data_root, "containers", cid, "syslog-cursor.json")

    def dropped():
        import json
        try:
            with open(cursor) as f:
                return json.load(f).get("dropped", 0)
        except (OSError, ValueError):
            return 0

    assert poll(dropped, timeout=20) > 0
    r.start()  # the receiver catches up: everything not dropped arrives
    assert poll(lambda: len(r.got) + dropped() == total, timeout=30), (len(r.got), dropped())
    nums = [int(m.decode().split(": ", 1)[1].split()[0]) for m in r.got]
    assert nums == sorted(nums) and len(set(nums)) == len(nums) and nums[-1] == total
    assert "dropping lines" in open(d.log_path).read()
    # the local cache still has the tail for `docker logs`
    assert ok(d.docker("logs", "--tail", "1", name)).split()[0] == str(total)


@pytest.mark.privileged
@pytest.mark.slow
def test_syslog_shipping_resumes_after_daemon_kill9_without_duplicates(clean_daemon, name, receivers):
    d = clean_daemon
    if os.environ.get("DYT_EXTERNAL_HOST"):
        pytest.skip("restarts the daemon")
    r = receivers("udp")
    total = 400
    ok(d.docker("run", "-d", "--name", name, "--log-driver", "syslog", "--log-opt", f"syslog-address={r.address}",
                "--log-opt", "tag=t", "busybox", "sh", "-c",
                f"i=1; while [ $i -le {total} ]; do echo line $i; i=$((i+1)); usleep 10000; done"))
    assert r.wait_for(50)
    d.restart(kill9=True)  # the container goes on writing while no daemon ships
    assert wait_exit(d, name, timeout=120) == 0
    r.wait_for(total, timeout=30)
    nums = [int(m.decode().rsplit(" ", 1)[1]) for m in r.got]
    missing = sorted(set(range(1, total + 1)) - set(nums))
    doubled = sorted(n for n in set(nums) if nums.count(n) > 1)
    assert nums == list(range(1, total + 1)), f"across the restart: missing {missing[:20]}, twice {doubled[:20]}"


# ---- pure parts (no daemon) -----------------------------------------------------------------------

def test_driver_defaults_as_docker():
    assert logdrivers.validate("json-file", {}) == logdrivers.LogPlan("json-file", None, 1, False, True)
    local = logdrivers.validate("local", {})
    assert (local.size_max, local.keep, local.compress, local.readable) == (20 << 20, 5, True, True)
    none = logdrivers.validate("none", {})
    assert (none.readable, none.keep) == (False, 0)
    sl = logdrivers.validate("syslog", {})
    assert sl.syslog == {"address": ("unixgram", "/dev/log"), "facility": 3, "tag": "{{.ID}}", "format": ""}
    assert (sl.size_max, sl.keep, sl.readable) == (20 << 20, 5, True)  # the dual-logging cache
    assert not logdrivers.validate("syslog", {"cache-disabled": "true"}).readable
    nb = logdrivers.validate("local", {"mode": "non-blocking"})
    assert nb.non_blocking and nb.buffer == 1 << 20
    assert logdrivers.validate("json-file", {"mode": "non-blocking", "max-buffer-size": "4m"}).buffer == 4 << 20


@pytest.mark.parametrize("addr, want", [
    ("udp://10.0.0.1:5514", ("udp", ("10.0.0.1", 5514))), ("tcp://logs.example", ("tcp", ("logs.example", 514))),
    ("tcp://[::1]:601", ("tcp", ("::1", 601))), ("unix:///dev/log", ("unix", "/dev/log")),
    ("unixgram:///run/x.sock", ("unixgram", "/run/x.sock")),
])
def test_syslog_address(addr, want):
    assert logdrivers.parse_address(addr) == want


@pytest.mark.parametrize("addr", ["udp://", "http://x", "unix://relative", "10.0.0.1:514"])
def test_syslog_address_rejects(addr):
    with pytest.raises(errdefs.InvalidArgument):
        logdrivers.parse_address(addr)


def test_tag_template_and_messages():
    class C:
        id, name, image, image_id = "ab" * 32, "/web", "busybox:1", "sha256:" + "cd" * 32

    assert logdrivers.render_tag("{{.ID}}|{{.FullID}}|{{ .Name }}|{{.ImageName}}|{{.ImageID}}", C) == \
        f"{'ab' * 6}|{'ab' * 32}|web|busybox:1|{'cd' * 6}"
    with pytest.raises(errdefs.InvalidArgument):
        logdrivers.validate("syslog", {"tag": "{{.Bogus}}"})
    t = 1795316724_705215000  # 2026-11-22T03:05:24.705215Z
    assert logdrivers.syslog_message("rfc5424", 16, "stderr", "tg", b"hi\n", t, "h", 7) == \
        b"<131>1 2026-11-22T03:05:24Z h tg 7 tg - hi\n"
    assert logdrivers.syslog_message("rfc5424micro", 3, "stdout", "tg", b"hi\n", t, "h", 7) == \
        b"<30>1 2026-11-22T03:05:24.705215Z h tg 7 tg - hi\n"
    assert re.fullmatch(rb"<30>Nov 22 \d\d:\d\d:24 tg\[7\]: hi\n",
                        logdrivers.syslog_message("", 3, "stdout", "tg", b"hi\n", t, "h", 7))


@pytest.mark.parametrize("driver", ["json-file", "local"])
def test_keeper_keeps_every_generation_when_at_most_one_rotation_late(tmp_path, driver):
    """The keeper against a stand-in for conmon (write records, then at the cap: close, open
    ``log.tmp`` O_CREAT|O_TRUNC, rename it over ``log``), late by up to one rotation: history keeps
    a contiguous tail, and a follower subscribed from the start reads every line."""
    import asyncio
    from dockyard.engine import logs
    from dockyard.runtime import logfile

    path = str(tmp_path / "c-json.log")

    class Engine:
        _containers = {}

    class C:
        id, log_path = "c" * 64, path
        host_config = {"LogConfig": {"Type": driver, "Config": {"max-size": "1k", "max-file": "4"}}}

    def record(n):
        return logfile.rfc3339nano(1795300492_000000000 + n).encode() + b" stdout F %06d\n" % n

    async def scenario():
        keeper = logs.LogRotator(Engine())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            keeper.track(C)
            pins = keeper.subscribe(C.id)
            tail = logfile.Tail(open(path, "rb"), path, pins)
            n = 0
            for gen in range(30):
                for _ in range(10):
                    n += 1
                    os.write(fd, record(n))
                os.close(fd)
                fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.rename(path + ".tmp", path)
                if gen % 2:  # every other rotation, wait until the keeper saw it
                    assert poll(lambda: keeper._by_cid[C.id].ino == os.stat(path).st_ino, timeout=10)
            n += 1
            os.write(fd, record(n))
            keeper.untrack(C.id)
            followed = [int(e[1]) for e in tail.read(1 << 30)]
            tail.close()
        finally:
            os.close(fd)
            keeper.stop()
        return n, followed

    n, followed = asyncio.run(scenario())
    assert followed == list(range(1, n + 1))
    kept = [int(e[1]) for e in logfile.read_entries(path)]
    assert kept == list(range(kept[0], n + 1)) and len(kept) > 30
    rotated = sorted(f for f in os.listdir(tmp_path) if f.startswith("c-json.log."))
    want = {"json-file": ["c-json.log.1", "c-json.log.2", "c-json.log.3"],
            "local": ["c-json.log.1.gz", "c-json.log.2.gz", "c-json.log.3.gz"]}[driver]
    assert [f for f in rotated if f != "c-json.log.keep"] == want
