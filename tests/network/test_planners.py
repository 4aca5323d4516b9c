"""Pure parts of the network subsystem: IPAM, nft ruleset text, link plans, DNS codec, files.
No root needed (the nft syntax check is skipped without it)."""

import ipaddress
import os
import sqlite3
import subprocess

import pytest

from dockyard.errdefs import InvalidArgument, Unavailable
from dockyard.network import Endpoint, Network, dns, files, ipam, plan, rules
from dockyard.network.store import Store

N = ipaddress.ip_network
A = ipaddress.ip_address


def test_pick_subnet_skips_taken_and_host_routes():
    taken = [N("0.0.0.0/0"), N("172.17.0.0/16"), N("172.18.5.0/24")]
    assert ipam.pick_subnet(ipam.DEFAULT_POOLS, taken) == N("172.19.0.0/16")
    assert ipam.pick_subnet(ipam.DEFAULT_POOLS, []) == N("172.17.0.0/16")


def test_pick_subnet_second_pool_then_exhausted():
    first = [N(f"172.{i}.0.0/16") for i in range(17, 32)]
    assert ipam.pick_subnet(ipam.DEFAULT_POOLS, first) == N("192.168.0.0/20")
    with pytest.raises(Unavailable, match="address pools"):
        ipam.pick_subnet([("10.9.0.0/24", 25)], [N("10.9.0.0/24")])


def test_allocate_sequential_no_duplicates_and_wraps():
    sub = N("10.1.0.0/29")  # hosts .1-.6, gateway .1
    used = {int(A("10.1.0.1"))}
    got = []
    last = None
    for _ in range(5):
        ip = ipam.allocate(sub, None, used, last)
        used.add(int(ip))
        got.append(str(ip))
        last = ip
    assert got == ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]
    with pytest.raises(Unavailable):
        ipam.allocate(sub, None, used, last)
    used.discard(int(A("10.1.0.3")))
    assert str(ipam.allocate(sub, None, used, last)) == "10.1.0.3"  # wraps to the freed one


def test_allocate_not_reusing_just_released():
    sub = N("10.1.0.0/24")
    used = {1, int(A("10.1.0.1"))}
    # .2 was released after .3 was handed out: the next one is .4, not .2.
    assert str(ipam.allocate(sub, None, used | {int(A("10.1.0.3"))}, A("10.1.0.3"))) == "10.1.0.4"


def test_allocate_ip_range():
    ip = ipam.allocate(N("10.1.0.0/16"), N("10.1.5.0/24"), set(), None)
    assert str(ip) == "10.1.5.1"


def test_static_ip_and_mac_checks():
    sub = N("10.1.0.0/24")
    with pytest.raises(InvalidArgument, match="not in the network's subnet"):
        ipam.check_static(A("10.2.0.5"), sub, set())
    with pytest.raises(InvalidArgument, match="already in use"):
        ipam.check_static(A("10.1.0.5"), sub, {int(A("10.1.0.5"))})
    assert ipam.mac_for(A("172.18.0.2")) == "02:42:ac:12:00:02"
    with pytest.raises(InvalidArgument, match="invalid MAC"):
        ipam.check_mac("zz:00:00:00:00:00")
    with pytest.raises(InvalidArgument, match="multicast"):
        ipam.check_mac("01:00:00:00:00:01")


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "nonsense", "fd00::/64", "10.0.0.0/31"])
def test_bad_subnet(bad):
    with pytest.raises(InvalidArgument):
        ipam.parse_subnet(bad)


def test_store_never_hands_out_an_ip_twice(tmp_path):
    s = Store(tmp_path / "n.db")
    with s.tx():
        s.insert_network(Network(id="n1", name="a", driver="bridge", subnet="10.1.0.0/24", gateway="10.1.0.1"))
    ep = Endpoint(id="e1", network_id="n1", container_id="c1", name="x", ip="10.1.0.2", prefixlen=24)
    with s.tx():
        s.insert_endpoint(ep)
    s.close()
    s = Store(tmp_path / "n.db")  # "restart"
    assert s.last_ip("n1") == "10.1.0.2"
    with pytest.raises(sqlite3.IntegrityError):
        with s.tx():
            s.insert_endpoint(Endpoint(id="e2", network_id="n1", container_id="c2", name="y", ip="10.1.0.2"))
    assert [e.id for e in s.endpoints()] == ["e1"]


def _sample_ruleset():
    return rules.ruleset(
        "ab12cd",
        [rules.BridgeRule("dyab12cd", "10.231.0.0/24", False),
         rules.BridgeRule("dyab12cd-aaaaaa", "10.232.0.0/24", False),
         rules.BridgeRule("dyab12cd-bbbbbb", "10.233.0.0/24", True)],
        [rules.PortRule("dyab12cd", "", 8080, "10.231.0.2", 80, "tcp"),
         rules.PortRule("dyab12cd", "127.0.0.1", 5353, "10.231.0.2", 53, "udp")],
    )


def test_ruleset_text():
    text = _sample_ruleset()
    lines = [l.strip() for l in text.splitlines()]
    # One transaction replacing only our two tables.
    assert lines[:4] == ["add table inet dockyard_ab12cd", "delete table inet dockyard_ab12cd",
                         "add table ip dockyard_ab12cd_nat", "delete table ip dockyard_ab12cd_nat"]
    assert {l.split()[2] for l in lines if l.startswith("table ")} == {"dockyard_ab12cd", "dockyard_ab12cd_nat"}
    # isolation between bridges, internal has no way out and no masquerade
    assert 'iifname "dyab12cd-aaaaaa" oifname { "dyab12cd", "dyab12cd-bbbbbb" } ct status & dnat == 0 drop' in lines
    assert 'iifname "dyab12cd-bbbbbb" oifname != "dyab12cd-bbbbbb" drop' in lines
    assert 'ip saddr 10.231.0.0/24 oifname != "dyab12cd" masquerade' in lines
    assert not any("10.233.0.0/24" in l and "masquerade" in l for l in lines)
    # ports: any address vs one address, and the localhost hairpin
    assert "tcp dport 8080 dnat to 10.231.0.2:80" in lines
    assert "ip daddr 127.0.0.1 udp dport 5353 dnat to 10.231.0.2:53" in lines
    assert 'ip saddr 127.0.0.0/8 oifname "dyab12cd" masquerade' in lines


def test_ruleset_masquerade_can_be_turned_off():
    text = rules.ruleset("t", [rules.BridgeRule("b", "10.1.0.0/24", False, masquerade=False)], [])
    assert "10.1.0.0/24" not in text and 'ip saddr 127.0.0.0/8 oifname "b" masquerade' in text


def test_ruleset_empty_only_deletes():
    assert rules.ruleset("ab12cd", [], []).count("\n") == 4


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/sbin/nft"), reason="nft -c needs root")
def test_ruleset_is_valid_nft():
    p = subprocess.run(["nft", "-c", "-f", "-"], input=_sample_ruleset(), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_endpoint_plan():
    ops = plan.endpoint_plan("br", "vethx", "/proc/1/ns/net", "eth0", "10.1.0.2", 24, "02:42:0a:01:00:02", "10.1.0.1")
    assert [o.kind for o in ops] == ["veth", "up", "addr", "up", "up", "route"]
    assert ops[0]["peer_netns"] == "/proc/1/ns/net" and ops[0]["master"] == "br"
    internal = plan.endpoint_plan("br", "vethx", "/p", "eth1", "10.1.0.2", 24, "m", None)
    assert "route" not in [o.kind for o in internal]
    assert plan.container_ifname({"eth0", "eth1"}) == "eth2"
    assert len(plan.host_ifname("f" * 64)) <= 15


def test_dns_codec_roundtrip():
    q = dns.build_query(0x1234, "web.example")
    qid, flags, name, qtype, qclass, question = dns.parse_query(q)
    assert (qid, name, qtype, qclass) == (0x1234, "web.example", dns.QTYPE_A, dns.QCLASS_IN)
    r = dns.build_response(qid, flags, question, dns.NOERROR, ["10.1.0.2", "10.1.0.3"])
    assert dns.parse_response(r) == (0x1234, dns.NOERROR, ["10.1.0.2", "10.1.0.3"])
    nx = dns.build_response(qid, flags, question, dns.NXDOMAIN)
    assert dns.parse_response(nx) == (0x1234, dns.NXDOMAIN, [])


@pytest.mark.parametrize("packet", [b"", b"\x00" * 11, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c",
                                    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ab"])
def test_dns_rejects_bad_packets(packet):
    with pytest.raises(dns.DnsFormatError):
        dns.parse_query(packet)


def test_etc_hosts_and_resolv_conf():
    hosts = files.etc_hosts("abc123", ["10.1.0.2"], ["db:10.9.9.9"])
    assert hosts.startswith("127.0.0.1\tlocalhost\n")
    assert hosts.endswith("10.9.9.9\tdb\n10.1.0.2\tabc123\n")
    host = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp\noptions ndots:2\n"
    assert files.resolv_conf(host) == "nameserver 10.0.0.2\nsearch corp\noptions ndots:2\n"
    assert files.resolv_conf("nameserver 127.0.0.1\n") == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    assert files.resolv_conf(host, "10.1.0.1") == "nameserver 10.1.0.1\nsearch corp\noptions ndots:2\n"
