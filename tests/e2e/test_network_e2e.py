"""Networking end to end: user networks with DNS, isolation, --internal, published ports, the real
docker CLI, docker-py and testcontainers, and a daemon kill -9 with a published port.

Traffic goes only to loopback or between namespaces this daemon made. Every test counts the host's
interfaces and our nft rules before and after and requires equality (``net_clean``).
"""

import hashlib
import json
import os
import socket
import statistics
import subprocess
import time
import urllib.parse

import pytest

from e2e_util import ok, poll

pytestmark = pytest.mark.privileged


# ---- host state ------------------------------------------------------------------------------

_DAEMON = []  # the module's daemon, for _links (other daemons on this host make their own links)


def _links() -> set[str]:
    """This daemon's interfaces: its bridges (dy<tag>...) and the veths enslaved to them."""
    tag = _tag(_DAEMON[0])
    out = set()
    for link in os.listdir("/sys/class/net"):
        master = os.path.realpath(f"/sys/class/net/{link}/master")
        if link.startswith(f"dy{tag}") or os.path.basename(master).startswith(f"dy{tag}"):
            out.add(link)
    return out


def _tag(daemon) -> str:
    # dockyard.network names its kernel objects after a hash of its state dir.
    return hashlib.sha256(os.path.join(daemon.data_root, "network").encode()).hexdigest()[:6]


def _nft_rules(daemon) -> list[str]:
    """Our tables' rules (the default bridge's base rules may appear once, on first use)."""
    r = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True)
    out, ours = [], False
    for line in r.stdout.splitlines():
        if line.startswith("table "):
            ours = f"dockyard_{_tag(daemon)}" in line
        elif ours and line.startswith("\t\t") and not line.strip().startswith(("type ", "}")):
            out.append(line.strip())
    return sorted(out)


@pytest.fixture(scope="module")
def netd(daemon):
    """The daemon with its default bridge made (it is created on first use, which must not count
    as a leak in the first test). At module end, the network objects of this daemon go."""
    _DAEMON[:] = [daemon]
    r = daemon.cli("run", "--rm", "busybox", "true")
    assert r.returncode == 0, r.stderr
    yield daemon
    # Nothing of ours should remain but the default bridge and our tables: remove them (the
    # shared fixture does not know about networking). Another module's next container recreates
    # them on first use.
    subprocess.run(["ip", "link", "del", f"dy{_tag(daemon)}"], capture_output=True)
    for t in (f"inet dockyard_{_tag(daemon)}", f"ip dockyard_{_tag(daemon)}_nat"):
        subprocess.run(["nft", "delete", "table", *t.split()], capture_output=True)


@pytest.fixture
def net_clean(netd, clean_daemon):
    """Interfaces and nft rules must be what they were once the test's objects are gone."""
    before_links, before_rules, before_ids = _links(), _nft_rules(netd), netd.container_ids()
    made = []  # networks the test made: removed at the end even if it failed
    yield made
    for cid in netd.container_ids() - before_ids:
        netd.http("DELETE", f"/containers/{cid}?force=1&v=1")
    for n in made:
        netd.http("DELETE", f"/networks/{n}")
    after_links = poll(lambda: _links() == before_links and _links(), 5) or _links()
    assert after_links == before_links, f"interfaces: +{after_links - before_links} -{before_links - after_links}"
    assert _nft_rules(netd) == before_rules


def _network(d, made, name, *args):
    out = ok(d.cli("network", "create", *args, name)).strip()
    made.append(name)
    return out


def _q(filters) -> str:
    return urllib.parse.quote(json.dumps(filters))


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def _http_get(port, host="127.0.0.1", timeout=5.0) -> bytes:
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
    finally:
        s.close()


def _in_netns(d, name, *cmd):
    """Run a host command inside the running container's netns (dockyard has no exec yet)."""
    pid = json.loads(ok(d.cli("inspect", name)))[0]["State"]["Pid"]
    return subprocess.run(["nsenter", "-t", str(pid), "-n", *cmd], capture_output=True, text=True, timeout=30)


def _serve_http(d, name, *run_args):
    """A busybox httpd serving 'hello' on port 80 of a detached container."""
    cmd = "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www"
    return ok(d.cli("run", "-d", "--name", name, *run_args, "busybox", "sh", "-c", cmd)).strip()


def _wait_http(port, timeout=10.0) -> bytes:
    def attempt():
        try:
            return _http_get(port)
        except OSError:
            return b""
    return poll(lambda: b"hello" in attempt() and attempt(), timeout) or attempt()


# ---- user networks ----------------------------------------------------------------------------

def test_user_network_dns_by_name_and_alias(netd, net_clean, name):
    _network(netd, net_clean, name)
    ok(netd.cli("run", "-d", "--name", name + "-a", "--network", name, "--network-alias", "db",
                "busybox", "sleep", "300"))
    ok(netd.cli("run", "-d", "--name", name + "-b", "--network", name, "busybox", "sleep", "300"))
    a = json.loads(ok(netd.cli("inspect", name + "-a")))[0]
    ep = a["NetworkSettings"]["Networks"][name]
    assert ep["IPAddress"] and ep["Gateway"] and ep["IPPrefixLen"] and ep["MacAddress"]
    assert "db" in ep["Aliases"] and name + "-a" in ep["DNSNames"]
    script = f"cat /etc/resolv.conf; for t in {name}-a db; do nslookup $t && ping -c1 -W2 $t || exit 1; done"
    out = ok(netd.cli("run", "--rm", "--network", name, "busybox", "sh", "-c", script))
    assert out.count(ep["IPAddress"]) >= 4, out
    assert f"nameserver {ep['Gateway']}" in out
    with open(a["HostsPath"]) as f:
        assert f"{ep['IPAddress']}\t{a['Config']['Hostname']}" in f.read()
    net = json.loads(ok(netd.cli("network", "inspect", name)))[0]
    assert {c["Name"] for c in net["Containers"].values()} == {name + "-a", name + "-b"}


def test_rename_updates_the_embedded_dns(netd, net_clean, name):
    _network(netd, net_clean, name)
    ok(netd.cli("run", "-d", "--name", name + "-a", "--network", name, "busybox", "sleep", "300"))
    ok(netd.cli("rename", name + "-a", name + "-c"))
    ip = json.loads(ok(netd.cli("inspect", name + "-c")))[0]["NetworkSettings"]["Networks"][name]["IPAddress"]
    out = ok(netd.cli("run", "--rm", "--network", name, "busybox", "nslookup", name + "-c"))
    assert ip in out, out
    r = netd.cli("run", "--rm", "--network", name, "busybox", "nslookup", name + "-a")
    assert ip not in r.stdout, r.stdout


def test_networks_are_isolated_and_internal_has_no_route(netd, net_clean, name):
    _network(netd, net_clean, name + "-1")
    _network(netd, net_clean, name + "-2")
    _network(netd, net_clean, name + "-i", "--internal")
    ok(netd.cli("run", "-d", "--name", name + "-x", "--network", name + "-1", "busybox", "sleep", "300"))
    ok(netd.cli("run", "-d", "--name", name + "-y", "--network", name + "-2", "busybox", "sleep", "300"))
    y = json.loads(ok(netd.cli("inspect", name + "-y")))[0]["NetworkSettings"]["Networks"][name + "-2"]
    r = _in_netns(netd, name + "-x", "busybox", "ping", "-c1", "-W1", y["IPAddress"])
    assert r.returncode != 0, "containers on different networks reached each other"
    # Connected live to both, x reaches y; disconnected, the interface goes.
    ok(netd.cli("network", "connect", name + "-2", name + "-x"))
    ok(_in_netns(netd, name + "-x", "busybox", "ping", "-c1", "-W2", y["IPAddress"]))
    assert "eth1" in ok(_in_netns(netd, name + "-x", "ip", "link"))
    ok(netd.cli("network", "disconnect", name + "-2", name + "-x"))
    assert "eth1" not in ok(_in_netns(netd, name + "-x", "ip", "link"))
    # --internal: no default route at all, only its own subnet.
    out = ok(netd.cli("run", "--rm", "--network", name + "-i", "busybox", "sh", "-c",
                      f"ip route; ping -c1 -W1 {y['IPAddress']} && echo REACHED; true"))
    assert "default" not in out and "REACHED" not in out


def test_network_api_shapes_and_errors(netd, net_clean, name):
    _network(netd, net_clean, name, "--subnet", "10.231.7.0/24", "--gateway", "10.231.7.254",
             "--label", "a=b", "-o", "com.docker.network.bridge.enable_ip_masquerade=true")
    st, n = netd.json("GET", f"/networks/{name}")
    assert st == 200 and n["IPAM"]["Config"] == [{"Subnet": "10.231.7.0/24", "Gateway": "10.231.7.254"}]
    assert n["Labels"] == {"a": "b"} and n["Scope"] == "local" and n["Driver"] == "bridge"
    st, body = netd.json("POST", "/networks/create", {"Name": name})
    assert st == 409 and "already exists" in body["message"]
    for pre in ("bridge", "host", "none"):
        st, body = netd.json("DELETE", f"/networks/{pre}")
        assert st == 403, body
    st, lst = netd.json("GET", "/networks?filters=" + _q({"type": ["custom"]}))
    assert [x["Name"] for x in lst] == [name]
    st, lst = netd.json("GET", "/networks?filters=" + _q({"label": ["a=b"]}))
    assert [x["Name"] for x in lst] == [name]
    st, lst = netd.json("GET", "/networks?filters=" + _q({"dangling": ["true"]}))
    assert [x["Name"] for x in lst] == [name]
    st, body = netd.json("POST", "/networks/create", {"Name": name + "x", "IPAM": {"Config": [{"Subnet": "10.231.7.0/25"}]}})
    assert st == 400 or st == 403 or st == 409, body
    r = netd.cli("run", "--rm", "--network", "nosuchnet", "busybox", "true")
    assert r.returncode != 0 and "network nosuchnet not found" in r.stderr
    # --ip picks the address; outside the subnet is one clear error.
    ok(netd.cli("run", "-d", "--name", name + "-s", "--network", name, "--ip", "10.231.7.9",
                "--mac-address", "02:42:0a:e7:07:09", "busybox", "sleep", "300"))
    ep = json.loads(ok(netd.cli("inspect", name + "-s")))[0]["NetworkSettings"]["Networks"][name]
    assert ep["IPAddress"] == "10.231.7.9" and ep["MacAddress"] == "02:42:0a:e7:07:09"
    assert "10.231.7.9" in ok(_in_netns(netd, name + "-s", "ip", "addr"))
    r = netd.cli("run", "-d", "--network", name, "--ip", "10.9.9.9", "busybox", "true")
    assert r.returncode != 0 and "10.9.9.9" in r.stderr
    st, _ = netd.json("DELETE", f"/networks/{name}")
    assert st == 409  # in use
    ok(netd.cli("rm", "-f", name + "-s"))
    ok(netd.cli("network", "rm", name))
    net_clean.remove(name)
    ok(netd.cli("network", "create", "--label", "keep=1", name + "-k"))
    net_clean.append(name + "-k")
    ok(netd.cli("network", "create", name + "-p"))
    out = ok(netd.cli("network", "prune", "-f", "--filter", "label!=keep"))
    assert name + "-p" in out and name + "-k" not in out


def test_etc_files_dns_options_and_add_host(netd, net_clean, name):
    out = ok(netd.cli("run", "--rm", "--hostname", "web1", "--dns", "192.0.2.53", "--dns-search", "example.org",
                      "--dns-option", "ndots:2", "--add-host", "gw:host-gateway", "--add-host", "db:192.0.2.7",
                      "busybox", "sh", "-c", "cat /etc/hostname /etc/resolv.conf /etc/hosts"))
    assert "web1\n" in out and "nameserver 192.0.2.53" in out and "search example.org" in out
    assert "options ndots:2" in out and "192.0.2.7\tdb" in out
    gw = json.loads(ok(netd.cli("network", "inspect", "bridge")))[0]["IPAM"]["Config"][0]["Gateway"]
    assert f"{gw}\tgw" in out
    # Default bridge: no loopback resolvers, and the container's address mapped to its hostname.
    out = ok(netd.cli("run", "--rm", "busybox", "sh", "-c", "cat /etc/resolv.conf; ip -4 addr show eth0"))
    assert "nameserver 127." not in out and "inet " in out
    out = ok(netd.cli("run", "--rm", "--network", "none", "busybox", "ip", "link"))
    assert "eth0" not in out
    # Host networking: the host's interfaces, and no endpoint or rule is made for it.
    host_if = sorted(set(os.listdir("/sys/class/net")) - {"lo"})[0]
    out = ok(netd.cli("run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net"))
    assert host_if in out.split() or len(out.split()) > 1


def test_container_network_mode_shares_netns(netd, net_clean, name):
    ok(netd.cli("run", "-d", "--name", name, "busybox", "sleep", "300"))
    ip = json.loads(ok(netd.cli("inspect", name)))[0]["NetworkSettings"]["IPAddress"]
    assert ip
    out = ok(netd.cli("run", "--rm", "--network", f"container:{name}", "busybox", "ip", "-4", "addr"))
    assert ip in out


# ---- published ports ---------------------------------------------------------------------------

def test_publish_loopback_port_and_random_port(netd, net_clean, name):
    port = _free_port()
    _serve_http(netd, name, "-p", f"127.0.0.1:{port}:80", "-p", "80", "--expose", "81")
    assert b"hello" in _wait_http(port)
    line = ok(netd.cli("port", name, "80")).splitlines()
    hosts = {l.rsplit(":", 1)[1] for l in line}
    assert str(port) in hosts and len(hosts) == 2
    rnd = int(next(h for h in hosts if h != str(port)))
    assert b"hello" in _wait_http(rnd)
    ins = json.loads(ok(netd.cli("inspect", name)))[0]["NetworkSettings"]
    assert {"HostIp": "127.0.0.1", "HostPort": str(port)} in ins["Ports"]["80/tcp"]
    assert ins["Ports"]["81/tcp"] is None
    ps = ok(netd.cli("ps", "--filter", f"name={name}", "--format", "{{.Ports}}"))
    assert f"127.0.0.1:{port}->80/tcp" in ps
    # The real docker CLI reads the same data.
    assert f"127.0.0.1:{port}" in ok(netd.docker("port", name, "80"))
    ok(netd.cli("stop", "-t", "1", name))
    with pytest.raises(OSError):
        _http_get(port, timeout=1)


def test_port_in_use_is_one_error_and_leaves_nothing(netd, net_clean, name):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        before = _links()
        r = netd.cli("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "300")
        assert r.returncode != 0 and f"{port}" in r.stderr and "already allocated" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        c = json.loads(ok(netd.cli("inspect", name)))[0]
        assert c["State"]["Status"] == "created" and "already allocated" in c["State"]["Error"]
        assert _links() == before
    finally:
        holder.close()


def test_publish_all_exposed(netd, net_clean, name):
    _serve_http(netd, name, "-P", "--expose", "80")
    ports = json.loads(ok(netd.cli("inspect", name)))[0]["NetworkSettings"]["Ports"]["80/tcp"]
    assert ports and ports[0]["HostPort"].isdigit()
    assert b"hello" in _wait_http(int(ports[0]["HostPort"]))


# ---- real clients -------------------------------------------------------------------------------

def test_docker_cli_network_and_ports(netd, net_clean, name):
    made = net_clean
    nid = ok(netd.docker("network", "create", "--label", "k=v", name)).strip()
    made.append(name)
    assert len(nid) == 64
    assert name in ok(netd.docker("network", "ls"))
    assert ok(netd.docker("network", "ls", "-q", "--filter", f"name={name}")).strip() == nid[:12]
    info = json.loads(ok(netd.docker("network", "inspect", name)))[0]
    assert info["Id"] == nid and info["Labels"] == {"k": "v"}
    port = _free_port()
    cmd = "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www"
    ok(netd.docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", cmd))
    assert b"hello" in _wait_http(port)
    assert ok(netd.docker("port", name)).strip() == f"80/tcp -> 127.0.0.1:{port}"
    ok(netd.docker("network", "connect", "--alias", "web", name, name))
    eps = json.loads(ok(netd.docker("inspect", name)))[0]["NetworkSettings"]["Networks"]
    assert set(eps) == {"bridge", name} and eps[name]["IPAddress"] and eps["bridge"]["IPAddress"]
    ok(netd.docker("network", "disconnect", name, name))
    ok(netd.docker("rm", "-f", name))
    ok(netd.docker("network", "rm", name))
    made.remove(name)
    r = netd.docker("network", "rm", "bridge")
    assert r.returncode != 0 and "pre-defined" in r.stderr


def test_docker_py_networks_and_ports(netd, net_clean, name):
    client = netd.api()
    n = client.networks.create(name, driver="bridge", labels={"k": "v"})
    net_clean.append(name)
    assert client.networks.get(n.id).name == name
    assert name in [x.name for x in client.networks.list()]
    assert [x.name for x in client.networks.list(filters={"label": "k=v"})] == [name]
    c = client.containers.run("busybox", ["sleep", "300"], detach=True, name=name, network=name,
                              ports={"80/tcp": None})
    c.reload()
    hp = c.ports["80/tcp"][0]["HostPort"]
    assert hp.isdigit()
    n.reload()
    assert [x.id for x in n.containers] == [c.id]
    # Connected while stopped: recorded, plumbed at the next start.
    n2 = client.networks.create(name + "-2")
    net_clean.append(name + "-2")
    c.stop(timeout=1)
    n2.connect(c, aliases=["later"])
    c.start()
    c.reload()
    nets = c.attrs["NetworkSettings"]["Networks"]
    assert nets[name]["IPAddress"] and nets[name + "-2"]["IPAddress"] and "later" in nets[name + "-2"]["Aliases"]
    c.remove(force=True)
    n.remove()
    n2.remove()
    net_clean.remove(name)
    net_clean.remove(name + "-2")


def test_testcontainers_mapped_port(netd, net_clean, monkeypatch):
    tc = pytest.importorskip("testcontainers.core.container")
    monkeypatch.setenv("DOCKER_HOST", netd.host)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    monkeypatch.setenv("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
    cmd = "sh -c 'mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www'"
    with tc.DockerContainer("busybox").with_exposed_ports(80).with_command(cmd) as c:
        port = int(c.get_exposed_port(80))
        assert b"hello" in _wait_http(port)


# ---- crash ---------------------------------------------------------------------------------------

def test_kill9_daemon_keeps_published_port(netd, net_clean, name):
    if netd.external:
        pytest.skip("external daemon")
    port = _free_port()
    _serve_http(netd, name, "-p", f"127.0.0.1:{port}:80")
    assert b"hello" in _wait_http(port)
    rules_running = _nft_rules(netd)
    netd.restart(kill9=True)
    assert b"hello" in _wait_http(port)
    assert _nft_rules(netd) == rules_running
    # The port is still held by the new daemon: a second container cannot take it.
    r = netd.cli("run", "-d", "--name", name + "-2", "-p", f"127.0.0.1:{port}:80", "busybox", "true")
    assert r.returncode != 0 and "already allocated" in r.stderr
    ok(netd.cli("rm", name + "-2"))
    ok(netd.cli("stop", "-t", "1", name))
    assert not any(str(port) in r for r in _nft_rules(netd))


def test_exit_while_daemon_is_down_releases_everything(netd, net_clean, name):
    if netd.external:
        pytest.skip("external daemon")
    _network(netd, net_clean, name)
    port = _free_port()
    rules_before = _nft_rules(netd)
    ok(netd.cli("run", "-d", "--name", name, "--network", name, "-p", f"127.0.0.1:{port}:80",
                "busybox", "sleep", "2"))
    netd.stop(kill9=True)
    time.sleep(3)  # the container exits while no daemon watches it
    netd.start()
    c = json.loads(ok(netd.cli("inspect", name)))[0]
    assert c["State"]["Status"] == "exited" and c["NetworkSettings"]["Ports"] == {}
    assert _nft_rules(netd) == rules_before
    # The host port is free again.
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.close()


# ---- bench notes (printed, never asserted) ------------------------------------------------------

def _start_time(d, *args) -> float:
    times = []
    for _ in range(15):
        t = time.monotonic()
        ok(d.cli("run", "--rm", *args, "busybox", "true"))
        times.append(time.monotonic() - t)
    return statistics.median(times)


def test_bench_start_and_throughput(netd, net_clean, name):
    bridge, none = _start_time(netd), _start_time(netd, "--network", "none")
    print(f"\nBENCH run --rm true, median of 15: bridge {bridge * 1000:.0f} ms, none {none * 1000:.0f} ms")
    port = _free_port()
    ok(netd.cli("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:9000", "busybox",
                "sh", "-c", "while true; do nc -l -p 9000 > /dev/null; done"))
    ip = json.loads(ok(netd.cli("inspect", name)))[0]["NetworkSettings"]["IPAddress"]
    payload = b"x" * (1 << 20)

    def send(host, p, mib=64) -> float:
        def connect():
            try:
                return socket.create_connection((host, p), timeout=5)
            except OSError:
                return None
        s = poll(connect, 10)
        assert s
        t = time.monotonic()
        for _ in range(mib):
            s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
        s.close()
        return mib / (time.monotonic() - t)

    published, direct = send("127.0.0.1", port), send(ip, 9000)
    print(f"BENCH 64 MiB over TCP: published port {published:.0f} MiB/s, direct to {ip} {direct:.0f} MiB/s")
