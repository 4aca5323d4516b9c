"""Privileged: real bridges, veths, nft rules and DNS. "Containers" are ``ip netns add``
namespaces; every packet stays inside namespaces made here or on loopback. The autouse leak
check (conftest) asserts interfaces and nft rules are unchanged after each test."""

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from dockyard.errdefs import AlreadyExists, Conflict, Forbidden, InvalidArgument, NotFound
from dockyard.network import DnsServer, dns, kernel

pytestmark = pytest.mark.privileged

CID1, CID2, CID3 = ("1" * 64), ("2" * 64), ("3" * 64)


def kill_container(ns, veth):
    """The container's netns goes away; the kernel destroys it (and the veth) asynchronously."""
    subprocess.run(["ip", "netns", "del", ns], check=True)
    for _ in range(100):
        if veth not in kernel.links():
            return
        time.sleep(0.05)
    raise AssertionError(f"{veth} outlived its netns")


def ping(run_in, ns, ip):
    return run_in(ns, "busybox", "ping", "-c", "1", "-W", "1", ip).returncode == 0


def host_address():
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        addr = line.split()[3].split("/")[0]
        if not line.split()[1].startswith("dy"):
            return addr
    pytest.skip("no global IPv4 address on the host")


@pytest.fixture
def outside(netns):
    """Another "host": a netns joined to the host by a veth, with a route only to the host's
    side of that veth (so a reply to a container subnet only works if it was masqueraded)."""
    name, _ = netns()
    sub = secrets.randbelow(200) + 20
    host_if, peer_if = "dytv" + secrets.token_hex(4), "dytp" + secrets.token_hex(4)
    subprocess.run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if, "netns", name], check=True)
    subprocess.run(["ip", "addr", "add", f"10.241.{sub}.1/30", "dev", host_if], check=True)
    subprocess.run(["ip", "link", "set", host_if, "up"], check=True)
    subprocess.run(["ip", "-n", name, "addr", "add", f"10.241.{sub}.2/30", "dev", peer_if], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", peer_if, "up"], check=True)
    yield name, f"10.241.{sub}.1", f"10.241.{sub}.2"
    subprocess.run(["ip", "link", "del", host_if], capture_output=True)  # netns teardown also would


@pytest.fixture
def httpd(tmp_path, run_in):
    """httpd(ns) starts busybox httpd on port 80 inside ns serving 'hello from <ns>'."""
    procs = []

    def start(ns):
        root = tmp_path / ns
        root.mkdir()
        (root / "index.html").write_text(f"hello from {ns}\n")
        p = subprocess.Popen(["ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", "80", "-h", str(root)])
        procs.append(p)
        for _ in range(50):
            if "0.0.0.0:80" in run_in(ns, "busybox", "netstat", "-ltn").stdout:
                break
            time.sleep(0.05)
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def get_in(run_in, ns, host, port, wait=3):
    """HTTP GET from inside ns with busybox nc (busybox wget crashes resolving even an IP in a
    netns without /etc files); returns the body."""
    p = run_in(ns, "busybox", "nc", "-w", str(wait), host, str(port), input="GET / HTTP/1.0\r\n\r\n")
    return p.stdout.partition("\n\n")[2] if "\n\n" in p.stdout else p.stdout.partition("\r\n\r\n")[2]


def http_get(host, port, timeout=3):
    with urllib.request.urlopen(f"http://{host}:{port}/", timeout=timeout) as r:
        return r.read().decode()


@pytest.fixture
def dns_loop(nm):
    """An asyncio loop in a thread, as the daemon's; start(upstreams) -> a synced DnsServer."""
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    servers = []

    def call(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(10)

    def start(upstreams=()):
        s = DnsServer(nm, upstreams=list(upstreams))
        call(s.sync())
        servers.append(s)
        return s

    start.call = call
    yield start
    for s in servers:
        call(s.close())
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)
    loop.close()


@pytest.fixture
def fake_upstream():
    """A resolver on 127.0.0.1 that knows only example.test (no internet here)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(512)
            except socket.timeout:
                continue
            qid, flags, name, qtype, _, q = dns.parse_query(data)
            if name == "example.test":
                sock.sendto(dns.build_response(qid, flags, q, dns.NOERROR, ["192.0.2.99"] if qtype == 1 else []), addr)
            else:
                sock.sendto(dns.build_response(qid, flags, q, dns.NXDOMAIN), addr)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield sock.getsockname()
    stop.set()
    t.join()
    sock.close()


def nslookup(run_in, ns, name, server):
    p = run_in(ns, "busybox", "nslookup", name, server)
    return p.returncode, p.stdout + p.stderr


def test_same_network_ping_and_dns(nm, netns, run_in, dns_loop, fake_upstream):
    net = nm.create_network("dyt-front", subnet="10.232.1.0/24", labels={"a": "b"})
    assert (net.gateway, net.labels) == ("10.232.1.1", {"a": "b"})
    (a, pa), (b, pb), (_, pc) = netns(), netns(), netns()
    e1 = nm.connect(CID1, pa, "dyt-front", name="web")
    e2 = nm.connect(CID2, pb, net.id[:10], name="db", aliases=["database"])
    other = nm.create_network("dyt-other", subnet="10.232.2.0/24")
    nm.connect(CID3, pc, "dyt-other", name="hidden")
    assert (e1.ip, e2.ip, e1.ifname, e1.mac) == ("10.232.1.2", "10.232.1.3", "eth0", "02:42:0a:e8:01:02")
    assert "link/ether 02:42:0a:e8:01:02" in run_in(a, "ip", "link", "show", "eth0").stdout
    assert "default via 10.232.1.1" in run_in(a, "ip", "route").stdout
    assert ping(run_in, a, e2.ip) and ping(run_in, b, e1.ip)

    dns_loop([fake_upstream])
    for name in ("db", "database", CID2[:12], "DB"):
        rc, out = nslookup(run_in, a, name, net.gateway)
        assert rc == 0 and e2.ip in out, (name, out)
    rc, out = nslookup(run_in, a, "hidden", net.gateway)  # another network: not visible
    assert rc != 0 or "10.232.2." not in out
    rc, out = nslookup(run_in, a, "example.test", net.gateway)  # forwarded upstream
    assert rc == 0 and "192.0.2.99" in out, out
    rc, out = nslookup(run_in, a, "nonexistent.test", net.gateway)
    assert "NXDOMAIN" in out or rc != 0
    # With resolv.conf pointing at the gateway, the libc resolver finds it too (ping by name).
    # ``ip netns exec`` bind-mounts /etc/netns/<ns>/resolv.conf over /etc/resolv.conf.
    from dockyard.network import resolv_conf
    conf = resolv_conf("nameserver 10.0.0.2\noptions ndots:0\n", net.gateway)
    assert conf == "nameserver 10.232.1.1\noptions ndots:0\n"
    os.makedirs(f"/etc/netns/{a}")
    try:
        with open(f"/etc/netns/{a}/resolv.conf", "w") as f:
            f.write(conf)
        p = run_in(a, "busybox", "ping", "-c", "1", "-W", "1", "database")
        assert p.returncode == 0 and e2.ip in p.stdout, p.stdout + p.stderr
    finally:
        shutil.rmtree(f"/etc/netns/{a}")
    nm.release_container(CID3)
    nm.remove_network(other.id)


def test_default_bridge_is_lazy_and_has_no_dns(nm, netns, run_in):
    assert nm.default_bridge not in kernel.links()
    (a, pa), (_, pb) = netns(), netns()
    e1 = nm.connect(CID1, pa, "bridge", name="x")
    e2 = nm.connect(CID2, pb, "bridge", name="y")
    assert e1.ip == "10.231.0.2" and nm.default_bridge in kernel.links()
    assert ping(run_in, a, e2.ip)
    assert nm.dns_lookup(nm.get("bridge").id, e1.ip, "y") is None


def test_networks_are_isolated(nm, netns, run_in, httpd):
    nm.create_network("dyt-a", subnet="10.232.3.0/24")
    nm.create_network("dyt-b", subnet="10.232.4.0/24", internal=False)
    (a, pa), (b, pb), (both, pboth) = netns(), netns(), netns()
    ea = nm.connect(CID1, pa, "dyt-a")
    eb = nm.connect(CID2, pb, "dyt-b")
    assert not ping(run_in, a, eb.ip)
    assert not ping(run_in, b, ea.ip)
    httpd(a)
    assert get_in(run_in, b, ea.ip, 80, wait=1) == ""  # not directly...
    (m,) = nm.publish(ea, [("", 0, 80, "tcp")])
    assert get_in(run_in, b, "10.232.4.1", m.host_port) == f"hello from {a}\n"  # ...but published
    # A container on both networks (connected live, second one is eth1) reaches both.
    nm.connect(CID3, pboth, "dyt-a")
    e3b = nm.connect(CID3, pboth, "dyt-b")
    assert e3b.ifname == "eth1"
    assert ping(run_in, both, ea.ip) and ping(run_in, both, eb.ip)


def test_internal_network_has_no_route_out(nm, netns, run_in, outside):
    nm.create_network("dyt-int", subnet="10.232.5.0/24", internal=True)
    nm.create_network("dyt-ext", subnet="10.232.6.0/24")
    (a, pa), (_, pb), (c, pc) = netns(), netns(), netns()
    ea = nm.connect(CID1, pa, "dyt-int")
    eb = nm.connect(CID2, pb, "dyt-int")
    nm.connect(CID3, pc, "dyt-ext")
    _, _, outside_ip = outside
    with pytest.raises(InvalidArgument, match="internal"):
        nm.publish(ea, [("", 0, 80, "tcp")])
    assert "default" not in run_in(a, "ip", "route").stdout
    assert ping(run_in, a, eb.ip)
    assert not ping(run_in, a, outside_ip)
    # A normal network gets out, masqueraded: "outside" has no route back to 10.232.6.0/24.
    assert ping(run_in, c, outside_ip)
    assert ea.ip.startswith("10.232.5.")


def test_published_port(nm, netns, run_in, httpd, outside):
    nm.create_network("dyt-pub", subnet="10.232.7.0/24")
    (a, pa), (b, pb) = netns(), netns()
    ep = nm.connect(CID1, pa, "dyt-pub", name="web")
    peer = nm.connect(CID2, pb, "dyt-pub", name="peer")
    httpd(a)
    (m,) = nm.publish(ep, [("", 0, 80, "tcp")])
    lo, hi = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    assert lo <= m.host_port <= hi and m.container_port == 80
    want = f"hello from {a}\n"
    assert http_get("127.0.0.1", m.host_port) == want
    assert http_get(host_address(), m.host_port) == want
    ons, host_side, _ = outside
    assert get_in(run_in, ons, host_side, m.host_port) == want
    # hairpin: a container on the same bridge through the published port
    assert get_in(run_in, b, "10.232.7.1", m.host_port) == want
    assert peer.ip != ep.ip

    nm.unpublish(ep)
    with pytest.raises(OSError):
        http_get("127.0.0.1", m.host_port, timeout=1)


def test_port_in_use_is_a_clear_error_and_leaves_nothing(nm, netns, host_state):
    nm.create_network("dyt-busy", subnet="10.232.8.0/24")
    (_, pa), (_, pb) = netns(), netns()
    ep = nm.connect(CID1, pa, "dyt-busy")
    ep2 = nm.connect(CID2, pb, "dyt-busy")
    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        before = host_state()
        # The second mapping fails: the first one (a free port) must be released too.
        with pytest.raises(Conflict, match=f"Bind for 0.0.0.0:{port} failed: port is already allocated"):
            nm.publish(ep, [("", 0, 81, "tcp"), ("0.0.0.0", port, 80, "tcp")])
        assert host_state() == before and nm.endpoints(CID1)[0].ports == []
        # Our own allocation conflicts too, even before anything is bound by others.
        (m,) = nm.publish(ep, [("127.0.0.1", 0, 80, "udp")])
        with pytest.raises(Conflict, match="already allocated"):
            nm.publish(ep2, [("", m.host_port, 80, "udp")])
        assert nm.endpoints(CID2)[0].ports == []
        with pytest.raises(InvalidArgument, match="not an address of this host"):
            nm.publish(ep2, [("192.0.2.254", 0, 80, "tcp")])
        with pytest.raises(InvalidArgument, match="protocol"):
            nm.publish(ep2, [("", 0, 80, "sctp")])
        with pytest.raises(InvalidArgument, match="container port"):
            nm.publish(ep2, [("", 0, 0, "tcp")])
    finally:
        busy.close()


def test_disconnect_live_and_reconnect(nm, netns, run_in):
    nm.create_network("dyt-live", subnet="10.232.9.0/24")
    (a, pa), (_, pb) = netns(), netns()
    e1 = nm.connect(CID1, pa, "dyt-live")
    e2 = nm.connect(CID2, pb, "dyt-live")
    assert ping(run_in, a, e2.ip)
    with pytest.raises(Conflict, match="already exists"):
        nm.connect(CID1, pa, "dyt-live")
    nm.disconnect(CID1, "dyt-live")
    assert "eth0" not in run_in(a, "ip", "link").stdout
    assert e1.host_ifname not in kernel.links()
    with pytest.raises(NotFound):
        nm.disconnect(CID1, "dyt-live")
    e1b = nm.connect(CID1, pa, "dyt-live")
    assert e1b.ifname == "eth0" and e1b.ip == "10.232.9.4"  # sequential: .2 is not reused at once
    assert ping(run_in, a, e2.ip)


def test_ipam_survives_restart(nm, netns):
    nm.create_network("dyt-ipam", subnet="10.232.10.0/29")
    (_, pa), (_, pb), (_, pc) = netns(), netns(), netns()
    e1 = nm.connect(CID1, pa, "dyt-ipam")
    nm.close()  # the daemon goes away; its kernel objects stay
    nm2 = nm.make()
    e2 = nm2.connect(CID2, pb, "dyt-ipam")
    assert e2.ip != e1.ip
    with pytest.raises(InvalidArgument, match="already in use"):
        nm2.connect(CID3, pc, "dyt-ipam", ip=e1.ip)
    with pytest.raises(InvalidArgument, match="not in the network's subnet"):
        nm2.connect(CID3, pc, "dyt-ipam", ip="10.99.0.1")
    e3 = nm2.connect(CID3, pc, "dyt-ipam", ip="10.232.10.6", mac="02:00:00:00:00:aa")
    assert (e3.ip, e3.mac) == ("10.232.10.6", "02:00:00:00:00:aa")


def test_reconcile_after_kill9(nm, netns, run_in, httpd):
    net = nm.create_network("dyt-rec", subnet="10.232.11.0/24")
    (a, pa), (b, pb) = netns(), netns()
    ea = nm.connect(CID1, pa, "dyt-rec")
    eb = nm.connect(CID2, pb, "dyt-rec")
    httpd(a)
    (m,) = nm.publish(ea, [("127.0.0.1", 0, 80, "tcp")])
    nm.close()  # kill -9: reservation sockets die with the process, kernel state stays
    # Meanwhile: container b died (its netns and so its veth are gone), the nft tables were
    # flushed by someone, and a bridge of a network removed mid-crash was left behind.
    kill_container(b, eb.host_ifname)
    subprocess.run(["nft", "delete", "table", "ip", f"dockyard_{nm.tag}_nat"], check=True)
    stray = f"dy{nm.tag}-ffffff"
    subprocess.run(["ip", "link", "add", stray, "type", "bridge"], check=True)

    nm2 = nm.make()
    fixed = nm2.reconcile()
    assert fixed["endpoints"] == [eb.id] and stray in fixed["links"] and fixed["ports"] == [m.host_port]
    assert stray not in kernel.links()
    assert [e.id for e in nm2.endpoints(network="dyt-rec")] == [ea.id]
    assert http_get("127.0.0.1", m.host_port) == f"hello from {a}\n"
    assert nm2.reconcile() == {"endpoints": [], "links": [], "bridges": [], "ports": []}  # idempotent
    # The bridge itself lost: recreated, with the surviving veth put back on it.
    subprocess.run(["ip", "link", "del", net.bridge], check=True)
    fixed = nm2.reconcile()
    assert fixed["bridges"] == [net.bridge] and fixed["links"] == [ea.host_ifname]
    assert http_get("127.0.0.1", m.host_port) == f"hello from {a}\n"


def test_bad_input_leaves_nothing(nm, netns, host_state):
    nm.create_network("dyt-ok", subnet="10.232.12.0/24")
    before = host_state()
    n_nets = len(nm.list())
    cases = [
        (InvalidArgument, dict(name="bad name!")),
        (AlreadyExists, dict(name="dyt-ok")),
        (InvalidArgument, dict(name="x", subnet="10.232.12.128/25")),  # overlaps dyt-ok
        (InvalidArgument, dict(name="x", subnet="10.233.0.0/24", gateway="10.9.9.9")),
        (InvalidArgument, dict(name="x", subnet="10.233.0.0/24", ip_range="10.234.0.0/24")),
        (InvalidArgument, dict(name="x", subnet="300.1.0.0/16")),
        (InvalidArgument, dict(name="x", driver="overlay")),
        (Forbidden, dict(name="x", driver="host")),
        (InvalidArgument, dict(name="x", options={"com.docker.network.bridge.name": "much-too-long-name"})),
        (Conflict, dict(name="x", options={"com.docker.network.bridge.name": "lo"})),  # never adopt
    ]
    for exc, kw in cases:
        with pytest.raises(exc) as info:
            nm.create_network(**kw)
        assert "\n" not in str(info.value) and str(info.value)
    with pytest.raises(InvalidArgument, match="does not exist"):
        nm.connect(CID1, "/var/run/netns/does-not-exist", "dyt-ok")
    with pytest.raises(NotFound, match="network nope not found"):
        nm.connect(CID1, "/proc/1/ns/net", "nope")
    with pytest.raises(Forbidden, match="pre-defined"):
        nm.remove_network("bridge")
    assert host_state() == before and len(nm.list()) == n_nets and nm.endpoints() == []
    _, pa = netns()
    nm.connect(CID1, pa, "dyt-ok")
    with pytest.raises(Conflict, match="active endpoints"):
        nm.remove_network("dyt-ok")
    nm.release_container(CID1)
    assert nm.prune() == ["dyt-ok"]
    with pytest.raises(NotFound):
        nm.get("dyt-ok")


def test_host_and_none_endpoints_touch_nothing(nm, host_state):
    before = host_state()
    e = nm.connect(CID1, "/proc/1/ns/net", "host")
    nm.connect(CID1, "", "none")
    assert e.ip == "" and host_state() == before
    nm.release_container(CID1)
    assert nm.endpoints(CID1) == []


_CHILD = """
import json, sys, time
from dockyard.network import NetworkManager
state, pa, pb = sys.argv[1:4]
nm = NetworkManager(state, state, bip="10.231.0.1/24")
nm.create_network("dyt-k9", subnet="10.232.13.0/24")
ea = nm.connect("1" * 64, pa, "dyt-k9")
eb = nm.connect("2" * 64, pb, "dyt-k9")
(m,) = nm.publish(ea, [("127.0.0.1", 0, 80, "tcp")])
print(json.dumps([ea.id, eb.id, ea.ip, m.host_port]), flush=True)
time.sleep(120)
"""


def test_real_kill9_then_reconcile(nm, netns, run_in, httpd):
    import json
    import signal
    import sys

    (a, pa), (b, pb) = netns(), netns()
    child = subprocess.Popen([sys.executable, "-c", _CHILD, nm.state_dir, pa, pb], stdout=subprocess.PIPE, text=True)
    try:
        ea_id, eb_id, ea_ip, port = json.loads(child.stdout.readline())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    httpd(a)
    # The data path is in the kernel: the published port works while the "daemon" is dead.
    assert http_get("127.0.0.1", port) == f"hello from {a}\n"
    kill_container(b, "veth" + eb_id[:11])  # a container died meanwhile
    nm2 = nm.make()
    fixed = nm2.reconcile()
    assert fixed["endpoints"] == [eb_id] and fixed["ports"] == [port]
    assert [e.ip for e in nm2.endpoints(network="dyt-k9")] == [ea_ip]
    # The port is ours again: nobody else can bind it.
    with pytest.raises(Conflict):
        nm2.publish(nm2.endpoints(network="dyt-k9")[0], [("127.0.0.1", port, 81, "tcp")])
    with pytest.raises(OSError):
        socket.create_server(("127.0.0.1", port)).close()
    assert http_get("127.0.0.1", port) == f"hello from {a}\n"


def test_dns_over_tcp_from_a_container(nm, netns, run_in, dns_loop):
    net = nm.create_network("dyt-tcp", subnet="10.232.14.0/24")
    (a, pa), (_, pb) = netns(), netns()
    nm.connect(CID1, pa, "dyt-tcp", name="one")
    e2 = nm.connect(CID2, pb, "dyt-tcp", name="two")
    dns_loop([])
    script = (
        "import socket, struct, sys\n"
        "from dockyard.network import dns\n"
        "q = dns.build_query(7, 'two')\n"
        "s = socket.create_connection((sys.argv[1], 53), timeout=3)\n"
        "s.sendall(struct.pack('!H', len(q)) + q)\n"
        "n = struct.unpack('!H', s.recv(2))[0]\n"
        "print(dns.parse_response(s.recv(n)))\n"
    )
    import sys

    p = run_in(a, sys.executable, "-c", script, net.gateway)
    assert p.stdout.strip() == f"(7, 0, ['{e2.ip}'])", p.stderr


def default_route(run_in, ns):
    return run_in(ns, "ip", "-4", "route", "show", "default").stdout.split()[2:3]


def test_default_route_stays_on_the_first_network(nm, netns, run_in, outside):
    """Docker keeps the default gateway of the network joined first; joining another one (live
    or second in a create) only adds its subnet route. Disconnecting the first moves it on."""
    nm.create_network("dyt-gw1", subnet="10.232.20.0/24")
    nm.create_network("dyt-gw2", subnet="10.232.21.0/24")
    nm.create_network("dyt-gwi", subnet="10.232.22.0/24", internal=True)
    (a, pa), (b, pb) = netns(), netns()
    nm.connect(CID1, pa, "dyt-gw1")
    e2 = nm.connect(CID1, pa, "dyt-gw2")
    assert default_route(run_in, a) == ["10.232.20.1"]
    assert "10.232.21.0/24 dev eth1" in run_in(a, "ip", "route").stdout  # still on-link
    _, _, outside_ip = outside
    assert ping(run_in, a, outside_ip)
    # An internal network joined first gives no route: the first one that can, does.
    nm.connect(CID2, pb, "dyt-gwi")
    nm.connect(CID2, pb, "dyt-gw2")
    nm.connect(CID2, pb, "dyt-gw1")
    assert default_route(run_in, b) == ["10.232.21.1"]
    # The gateway's network goes: the next one in connect order takes over.
    nm.disconnect(CID1, "dyt-gw1")
    assert default_route(run_in, a) == [e2.gateway]
    assert ping(run_in, a, outside_ip)
    nm.disconnect(CID2, "dyt-gw1")  # not the gateway holder: the route does not move
    assert default_route(run_in, b) == ["10.232.21.1"]
    nm.release_container(CID1)
    nm.release_container(CID2)


def test_rename_endpoint_updates_dns(nm, netns, run_in, dns_loop):
    net = nm.create_network("dyt-ren", subnet="10.232.23.0/24")
    other = nm.create_network("dyt-ren2", subnet="10.232.24.0/24")
    (a, pa), (_, pb) = netns(), netns()
    ea = nm.connect(CID1, pa, "dyt-ren", name="client")
    nm.connect(CID2, pb, "dyt-ren", name="old", aliases=["svc"])
    e2b = nm.connect(CID2, pb, "dyt-ren2", name="old")
    dns_loop([])
    assert nslookup(run_in, a, "old", net.gateway)[0] == 0
    nm.rename_endpoint(CID2, "/new")  # the engine's names carry Docker's leading "/"
    assert {e.name for e in nm.endpoints(CID2)} == {"new"}  # on every network
    rc, out = nslookup(run_in, a, "new", net.gateway)
    assert rc == 0 and "10.232.23.3" in out, out
    assert nslookup(run_in, a, "old", net.gateway)[0] != 0
    assert nm.dns_lookup(net.id, ea.ip, "svc") == ["10.232.23.3"]  # aliases and short ID stay
    assert nm.dns_lookup(net.id, ea.ip, CID2[:12]) == ["10.232.23.3"]
    assert nm.dns_lookup(other.id, e2b.ip, "new") == ["10.232.23.3", e2b.ip]  # its own networks
    with pytest.raises(InvalidArgument, match="invalid container name"):
        nm.rename_endpoint(CID2, "bad name!")
    assert {e.name for e in nm.endpoints(CID2)} == {"new"}
    nm.rename_endpoint(CID3, "nobody")  # not running, no endpoints: nothing to do
    assert nm.endpoints(CID3) == []
    nm.release_container(CID1)
    nm.release_container(CID2)



def test_mtu_option(nm, netns, run_in, host_state):
    opt = "com.docker.network.driver.mtu"
    before = host_state()
    for bad in ("jumbo", "67", "70000"):
        with pytest.raises(InvalidArgument, match=f"invalid {opt}"):
            nm.create_network("dyt-mtu-bad", subnet="10.232.26.0/24", options={opt: bad})
    assert host_state() == before and [n.name for n in nm.list() if n.name.startswith("dyt-")] == []
    nm.create_network("dyt-mtu", subnet="10.232.26.0/24", options={opt: "9000"})
    (a, pa), (b, pb) = netns(), netns()
    e1 = nm.connect(CID1, pa, "dyt-mtu")
    nm.connect(CID2, pb, "dyt-mtu")
    assert "mtu 9000" in run_in(a, "ip", "link", "show", "eth0").stdout
    assert "mtu 9000" in subprocess.run(["ip", "link", "show", e1.host_ifname], capture_output=True, text=True).stdout
    # The bridge takes its ports' MTU by itself (so the gateway path has it too).
    bridge = nm.get("dyt-mtu").bridge
    assert "mtu 9000" in subprocess.run(["ip", "link", "show", bridge], capture_output=True, text=True).stdout
    assert ping(run_in, b, e1.ip)
    nm.release_container(CID1)
    nm.release_container(CID2)


def test_netlink_errors_are_errdefs_and_a_link_gone_meanwhile_is_deleted():
    """pyroute2's NetlinkError is not an OSError (0.9): the kernel layer must still turn it into
    one clear errdefs line, and a delete that finds the veth gone with its netns (ENODEV, the
    kernel's own teardown won the race) is a success, not five retries and a reconcile."""
    import errno

    from pyroute2.netlink.exceptions import NetlinkError

    from dockyard.errdefs import Internal
    from dockyard.network import plan

    name = "dyt" + secrets.token_hex(3)
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"], check=True)
    try:
        with pytest.raises(Internal, match=f"network: master name={name} master=lo: "):
            kernel.apply([plan.Op("master", {"name": name, "master": "lo"})])  # lo is no bridge
    finally:
        subprocess.run(["ip", "link", "del", name], check=True)  # its peer goes with it

    class Racing:  # the link is listed, then gone by the time it is deleted
        def link_lookup(self, ifname):
            return [12345]

        def link(self, *a, **kw):
            raise NetlinkError(errno.ENODEV, "No such device")

    kernel._do(Racing(), plan.Op("del_link", {"name": name}))  # no exception


def test_release_after_exit_deletes_veths_in_the_background(nm, netns):
    """release_container(exited=True) frees the address and the rows at once and leaves the veth
    to a background deleter; close() (the daemon's stop) waits for it, so nothing outlives us."""
    ns, path = netns()
    ep = nm.connect(CID1, path, "bridge")
    assert ep.host_ifname in kernel.links()
    nm.release_container(CID1, exited=True)
    assert nm.store.endpoints(container_id=CID1) == []  # the commit point passed synchronously
    nm._deleter.put("dytnosuch0")  # a link already gone (the kernel's netns teardown won) is fine
    nm._deleter.drain()
    assert ep.host_ifname not in kernel.links()
    # The next container may take the next address at once.
    ep2 = nm.connect(CID2, path, "bridge")
    assert ep2.ip != ep.ip
    nm.release_container(CID2)
    assert ep2.host_ifname not in kernel.links()
