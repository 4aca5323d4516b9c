"""Fixtures for the network subsystem's privileged tests.

``nm``       a NetworkManager on a private temp state dir, with a default bridge subnet (bip) of its
             own; at teardown it removes every kernel object it made, then checks that the host's
             interfaces and nft rules are exactly what they were before the test.
``netns``    factory: ``netns()`` -> (name, path) of a fresh ``ip netns add`` namespace, deleted at
             teardown (which also destroys any veth end inside it).
``run_in``   ``run_in(ns, *argv, timeout=10)`` -> CompletedProcess of argv run inside netns ``ns``.
All names carry a per-test random suffix so parallel runs and other engineers' tests do not clash.
"""

import os
import re
import secrets
import shutil
import subprocess
import tempfile

import pytest

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


# Tags (hash of a state dir) of the managers the current test made. Bridges and nft tables of
# any other dockyard daemon on the machine (a session daemon of another test directory, another
# engineer's run) come and go on their own and are not this test's leaks.
_OWN_TAGS: set[str] = set()
_FOREIGN_LINK = re.compile(r"^dy([0-9a-f]{6})(-|$)")
_FOREIGN_TABLE = re.compile(r"^table \S+ dockyard_([0-9a-f]{6})(_nat)? \{")


def _foreign(tag: str) -> bool:
    return tag not in _OWN_TAGS


def host_state():
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    names = []
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        master = re.search(r" master (\S+)", line)
        # A foreign daemon's bridge, or a container veth plugged into one.
        if any((m := _FOREIGN_LINK.match(n)) and _foreign(m.group(1))
               for n in (name, master.group(1) if master else "")):
            continue
        names.append(name)
    names.sort()
    text = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    rules, skipping = [], False
    for line in text.splitlines():
        if (m := _FOREIGN_TABLE.match(line)) and _foreign(m.group(1)):
            skipping = True
        if not skipping:
            # Counters change with traffic; compare the rule text without them.
            rules.append(re.sub(r"counter packets \d+ bytes \d+", "counter", line))
        if skipping and line == "}":
            skipping = False
    return names, rules


@pytest.fixture(name="host_state")
def host_state_fixture():
    """The snapshot function itself, for tests that compare mid-test."""
    return host_state


@pytest.fixture
def netns():
    made = []

    def make():
        name = "dyt" + secrets.token_hex(4)
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        return name, f"/var/run/netns/{name}"

    yield make
    for name in made:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def run_in():
    def run(ns, *argv, timeout=10, input=None):
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                              timeout=timeout, input=input)

    return run


@pytest.fixture
def nm(netns):
    if os.geteuid() != 0:
        pytest.skip("privileged: needs root for netlink and nft")
    from dockyard.network import NetworkManager

    state = tempfile.mkdtemp(prefix="dyt-net-")
    # A bip in 10.2xx space unlikely to be used by anything else on the machine.
    managers = []

    def make(**kw):
        m = NetworkManager(state, state, bip=kw.pop("bip", "10.231.0.1/24"), **kw)
        _OWN_TAGS.add(m.tag)
        managers.append(m)
        return m

    m = make()
    m.make = make  # tests that "restart the daemon" open a second manager on the same state dir
    yield m
    for x in managers:
        x.close()  # idempotent; tests may have closed some to simulate a daemon exit
    last = make()  # a fresh manager on the same state removes what any of them made
    try:
        last.teardown()
    finally:
        last.close()
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(autouse=True)
def _leak_check(request):
    """Interfaces and nft rules after the test (and all its fixtures) equal those before."""
    if os.geteuid() != 0:
        yield
        return
    _OWN_TAGS.clear()
    before = host_state()
    yield
    # Runs after the fixtures this test requested are finalized (autouse is set up first).
    after = host_state()
    assert after == before, "network leak: " + repr(
        (set(after[0]) ^ set(before[0]), [l for l in after[1] if l not in before[1]])
    )
