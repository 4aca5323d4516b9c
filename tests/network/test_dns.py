"""The embedded DNS server's answers, driven directly (no root): a stand-in for the manager's
lookup, and a fake upstream resolver on 127.0.0.1 for forwarding."""

import asyncio

from dockyard.errdefs import NotFound
from dockyard.network import Network, dns
from dockyard.network.dns import DnsServer


class FakeManager:
    def __init__(self, internal=False):
        self.internal = internal

    def dns_lookup(self, nid, src, name):
        return ["10.1.0.3"] if (src, name.lower()) == ("10.1.0.2", "db") else None

    def get(self, nid):
        if nid == "gone":
            raise NotFound("network gone not found")
        return Network(id=nid, name="n", driver="bridge", internal=self.internal)

    def list(self):
        return []


class Upstream(asyncio.DatagramProtocol):
    def connection_made(self, t):
        self.t = t

    def datagram_received(self, data, addr):
        qid, flags, name, _, _, q = dns.parse_query(data)
        self.t.sendto(dns.build_response(qid, flags, q, dns.NOERROR, ["192.0.2.7"]) if name == "up.test"
                      else dns.build_response(qid, flags, q, dns.NXDOMAIN), addr)


def ask(server, src, name, qtype=dns.QTYPE_A, nid="n1"):
    return dns.parse_response(asyncio.get_event_loop().run_until_complete(
        server.answer(nid, src, dns.build_query(42, name, qtype))))


def _with_upstream(fn):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        t, _ = loop.run_until_complete(loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", 0)))
        try:
            fn(t.get_extra_info("sockname"))
        finally:
            t.close()
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def test_answers_local_names_and_forwards_the_rest():
    def check(upstream):
        s = DnsServer(FakeManager(), upstreams=[upstream], timeout=1)
        assert ask(s, "10.1.0.2", "db") == (42, dns.NOERROR, ["10.1.0.3"])
        assert ask(s, "10.1.0.2", "DB.") == (42, dns.NOERROR, ["10.1.0.3"])
        assert ask(s, "10.1.0.2", "db", dns.QTYPE_AAAA) == (42, dns.NOERROR, [])
        assert ask(s, "10.1.0.9", "db") == (42, dns.NXDOMAIN, [])  # a stranger: forwarded, unknown
        assert ask(s, "10.1.0.2", "up.test") == (42, dns.NOERROR, ["192.0.2.7"])
        assert ask(s, "10.1.0.2", "db", nid="gone")[1] == dns.NOERROR  # local answer first
        assert ask(s, "10.1.0.2", "x", nid="gone")[1] == dns.REFUSED

    _with_upstream(check)


def test_internal_network_never_forwards():
    def check(upstream):
        s = DnsServer(FakeManager(internal=True), upstreams=[upstream], timeout=1)
        assert ask(s, "10.1.0.2", "up.test") == (42, dns.NXDOMAIN, [])
        assert ask(s, "10.1.0.2", "db") == (42, dns.NOERROR, ["10.1.0.3"])

    _with_upstream(check)


def test_dead_upstream_is_servfail_and_garbage_is_formerr():
    def check(_):
        s = DnsServer(FakeManager(), upstreams=[("127.0.0.1", 9)], timeout=0.3)
        assert ask(s, "10.1.0.2", "up.test") == (42, dns.SERVFAIL, [])
        loop = asyncio.get_event_loop()
        reply = loop.run_until_complete(s.answer("n1", "10.1.0.2", b"\x00\x05garbage"))
        assert dns.parse_response(reply)[:2] == (5, dns.FORMERR)
        assert loop.run_until_complete(s.answer("n1", "10.1.0.2", b"\x00")) is None

    _with_upstream(check)
