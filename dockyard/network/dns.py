"""Embedded DNS for user-defined networks.

Design: the server listens on each user network's gateway address, port 53 (UDP and TCP), and
containers get ``nameserver <gateway>`` in resolv.conf. Docker instead answers on 127.0.0.11
inside every container through per-container DNAT rules in the container's netns; listening on the
gateway needs no per-container kernel state, works for containers joined live, and the gateway is
on-link, so it is reachable even from --internal networks, which have no default route.
The querying container is identified by its source address on that network; it gets A records for
the names, aliases and short IDs of containers sharing a user network with it. Other names go to
the host's resolvers (not for internal networks: nothing leaves them); with no resolver, NXDOMAIN.

The packet codec is hand-written: we need one question in, A answers out, and the few header bits.
"""

import asyncio
import ipaddress
import struct

from dockyard.errdefs import NotFound, Unavailable

from . import files

QTYPE_A, QTYPE_AAAA, QCLASS_IN = 1, 28, 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, REFUSED = 0, 1, 2, 3, 5
TTL = 600


class DnsFormatError(ValueError):
    pass


def decode_name(buf: bytes, off: int) -> tuple[str, int]:
    """Name at ``off``; returns (name, offset after it). Follows compression pointers (RFC 1035
    4.1.4), at most 32 of them, so a looping packet cannot hang us."""
    labels, end, jumps = [], None, 0
    while True:
        if off >= len(buf):
            raise DnsFormatError("name runs past the packet")
        n = buf[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(buf) or jumps > 32:
                raise DnsFormatError("bad compression pointer")
            end = end if end is not None else off + 2
            off, jumps = ((n & 0x3F) << 8) | buf[off + 1], jumps + 1
            continue
        if n & 0xC0:
            raise DnsFormatError("bad label type")
        off += 1
        if n == 0:
            break
        labels.append(buf[off:off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels), end if end is not None else off


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("ascii")
            if len(raw) > 63:
                raise DnsFormatError("label longer than 63 bytes")
            out += bytes([len(raw)]) + raw
    return out + b"\0"


def parse_query(buf: bytes):
    """-> (id, flags, qname, qtype, qclass, question_bytes)"""
    if len(buf) < 12:
        raise DnsFormatError("short header")
    qid, flags, qd = struct.unpack("!HHH", buf[:6])
    if flags & 0x8000 or qd != 1:
        raise DnsFormatError("not a single-question query")
    name, off = decode_name(buf, 12)
    if off + 4 > len(buf):
        raise DnsFormatError("truncated question")
    qtype, qclass = struct.unpack("!HH", buf[off:off + 4])
    return qid, flags, name, qtype, qclass, buf[12:off + 4]


def build_response(qid, qflags, question: bytes, rcode=NOERROR, addrs=()) -> bytes:
    # QR, copy opcode and RD, AA (we are authoritative for container names), RA.
    flags = 0x8000 | (qflags & 0x7900) | 0x0400 | 0x0080 | rcode
    out = struct.pack("!HHHHHH", qid, flags, 1 if question else 0, len(addrs), 0, 0) + question
    for a in addrs:
        # 0xC00C: pointer to the question name at offset 12.
        out += struct.pack("!HHHIH", 0xC00C, QTYPE_A, QCLASS_IN, TTL, 4) + ipaddress.IPv4Address(a).packed
    return out


def build_query(qid, name, qtype=QTYPE_A) -> bytes:
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + encode_name(name) + struct.pack("!HH", qtype, QCLASS_IN)


def parse_response(buf: bytes):
    """-> (id, rcode, [A addresses]) — for tests and the forwarder's sanity check."""
    qid, flags, qd, an = struct.unpack("!HHHH", buf[:8])
    off = 12
    for _ in range(qd):
        _, off = decode_name(buf, off)
        off += 4
    addrs = []
    for _ in range(an):
        _, off = decode_name(buf, off)
        rtype, _, _, rdlen = struct.unpack("!HHIH", buf[off:off + 10])
        off += 10
        if rtype == QTYPE_A and rdlen == 4:
            addrs.append(str(ipaddress.IPv4Address(buf[off:off + 4])))
        off += rdlen
    return qid, flags & 0xF, addrs


class DnsServer:
    def __init__(self, manager, upstreams=None, port=53, timeout=2.0):
        self.nm = manager
        if upstreams is None:
            upstreams = [(s, 53) for s in files.nameservers(files.host_resolv_conf())]
        self.upstreams = list(upstreams)
        self.port = port
        self.timeout = timeout
        self._listeners = {}  # network id -> (gateway, udp transport, tcp server)

    async def sync(self):
        """Listen on the gateway of every user network, stop listening for removed ones."""
        nets = {n.id: n for n in await asyncio.to_thread(self.nm.list) if n.user_defined and n.driver == "bridge"}
        for nid in list(self._listeners):
            if nid not in nets or nets[nid].gateway != self._listeners[nid][0]:
                await self._stop(nid)
        loop = asyncio.get_running_loop()
        for nid, n in nets.items():
            if nid in self._listeners:
                continue
            udp = None
            try:
                udp, _ = await loop.create_datagram_endpoint(
                    lambda nid=nid: _Udp(self, nid), local_addr=(n.gateway, self.port))
                tcp = await asyncio.start_server(lambda r, w, nid=nid: self._tcp(nid, r, w), n.gateway, self.port)
            except OSError as e:
                if udp:
                    udp.close()
                raise Unavailable(f"embedded DNS cannot listen on {n.gateway}:{self.port}: {e.strerror}") from e
            self._listeners[nid] = (n.gateway, udp, tcp)

    async def _stop(self, nid):
        _, udp, tcp = self._listeners.pop(nid)
        udp.close()
        tcp.close()
        await tcp.wait_closed()

    async def close(self):
        for nid in list(self._listeners):
            await self._stop(nid)

    async def answer(self, nid, src_ip, packet: bytes) -> bytes | None:
        try:
            qid, qflags, name, qtype, qclass, question = parse_query(packet)
        except DnsFormatError:
            if len(packet) >= 4:
                return build_response(struct.unpack("!H", packet[:2])[0], 0, b"", FORMERR)
            return None
        if qclass == QCLASS_IN and qtype in (QTYPE_A, QTYPE_AAAA):
            addrs = await asyncio.to_thread(self.nm.dns_lookup, nid, src_ip, name)
            if addrs:
                # Our names have no IPv6 address: AAAA gets an empty NOERROR, so resolvers stop.
                return build_response(qid, qflags, question, NOERROR, addrs if qtype == QTYPE_A else ())
        try:
            internal = (await asyncio.to_thread(self.nm.get, nid)).internal
        except NotFound:  # the network was removed under us; sync() will close this socket
            return build_response(qid, qflags, question, REFUSED)
        if internal or not self.upstreams:
            return build_response(qid, qflags, question, NXDOMAIN)
        for host, port in self.upstreams:
            reply = await self._forward(host, port, packet)
            if reply is not None:
                return reply
        return build_response(qid, qflags, question, SERVFAIL)

    async def _forward(self, host, port, packet):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        class _Once(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                if not fut.done() and data[:2] == packet[:2]:
                    fut.set_result(data)

            def error_received(self, exc):
                if not fut.done():
                    fut.set_result(None)

        try:
            transport, _ = await loop.create_datagram_endpoint(_Once, remote_addr=(host, port))
        except OSError:
            return None
        try:
            transport.sendto(packet)
            return await asyncio.wait_for(fut, self.timeout)
        except asyncio.TimeoutError:
            return None
        finally:
            transport.close()

    async def _tcp(self, nid, reader, writer):
        try:
            while True:
                n = struct.unpack("!H", await reader.readexactly(2))[0]
                reply = await self.answer(nid, writer.get_extra_info("peername")[0], await reader.readexactly(n))
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server, nid):
        self.server, self.nid = server, nid

    def connection_made(self, transport):
        self.transport = transport
        self.tasks = set()  # the loop holds tasks weakly; keep them until done

    def datagram_received(self, data, addr):
        task = asyncio.get_running_loop().create_task(self._reply(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _reply(self, data, addr):
        reply = await self.server.answer(self.nid, addr[0], data)
        if reply is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)
