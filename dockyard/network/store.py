"""SQLite state of the network subsystem: networks, endpoints (holding the allocated IPs) and
published ports. The UNIQUE constraints are IPAM's guarantee: an address or host port is handed
out at most once, whatever the planner says, across restarts.
"""

import json
import sqlite3
import threading

from . import Endpoint, Network, PortMapping

_SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, driver TEXT NOT NULL,
  subnet TEXT NOT NULL, gateway TEXT NOT NULL, ip_range TEXT NOT NULL, internal INTEGER NOT NULL,
  labels TEXT NOT NULL, options TEXT NOT NULL, bridge TEXT NOT NULL, created TEXT NOT NULL,
  last_ip TEXT);
CREATE TABLE IF NOT EXISTS endpoints (
  id TEXT PRIMARY KEY, network_id TEXT NOT NULL REFERENCES networks(id), container_id TEXT NOT NULL,
  name TEXT NOT NULL, aliases TEXT NOT NULL, ifname TEXT NOT NULL, host_ifname TEXT NOT NULL,
  ip TEXT, prefixlen INTEGER NOT NULL, gateway TEXT NOT NULL, mac TEXT NOT NULL, netns_path TEXT NOT NULL,
  UNIQUE (network_id, container_id), UNIQUE (network_id, ip));
CREATE TABLE IF NOT EXISTS ports (
  endpoint_id TEXT NOT NULL REFERENCES endpoints(id), host_ip TEXT NOT NULL, host_port INTEGER NOT NULL,
  container_port INTEGER NOT NULL, proto TEXT NOT NULL, UNIQUE (host_ip, host_port, proto));
"""


class Store:
    def __init__(self, path):
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        self.lock = threading.RLock()

    def close(self):
        self.db.close()

    def tx(self):
        """``with store.tx():`` one transaction (the commit point of an operation)."""
        return _Tx(self)

    def _rows(self, q, args=()):
        # Reads take the lock too: the DNS server reads from another thread while an operation
        # may be inside a transaction on this same connection.
        with self.lock:
            return self.db.execute(q, args).fetchall()

    def networks(self) -> list[Network]:
        rows = self._rows("SELECT * FROM networks ORDER BY created, name")
        return [_network(r) for r in rows]

    def last_ip(self, network_id):
        r = self._rows("SELECT last_ip FROM networks WHERE id=?", (network_id,))
        return r[0][0] if r else None

    def insert_network(self, n: Network):
        self.db.execute(
            "INSERT INTO networks VALUES (?,?,?,?,?,?,?,?,?,?,?,NULL)",
            (n.id, n.name, n.driver, n.subnet, n.gateway, n.ip_range, int(n.internal),
             json.dumps(n.labels), json.dumps(n.options), n.bridge, n.created),
        )

    def delete_network(self, network_id):
        self.db.execute("DELETE FROM networks WHERE id=?", (network_id,))

    def endpoints(self, network_id=None, container_id=None) -> list[Endpoint]:
        q, args = "SELECT * FROM endpoints WHERE 1=1", []
        if network_id:
            q, args = q + " AND network_id=?", args + [network_id]
        if container_id:
            q, args = q + " AND container_id=?", args + [container_id]
        eps = [_endpoint(r) for r in self._rows(q + " ORDER BY rowid", args)]
        for ep in eps:
            ep.ports = self.ports(ep.id)
        return eps

    def insert_endpoint(self, e: Endpoint):
        self.db.execute(
            "INSERT INTO endpoints VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (e.id, e.network_id, e.container_id, e.name, json.dumps(e.aliases), e.ifname, e.host_ifname,
             e.ip or None, e.prefixlen, e.gateway, e.mac, e.netns_path),
        )
        if e.ip:
            self.db.execute("UPDATE networks SET last_ip=? WHERE id=?", (e.ip, e.network_id))

    def rename_endpoints(self, container_id, name):
        self.db.execute("UPDATE endpoints SET name=? WHERE container_id=?", (name, container_id))

    def delete_endpoint(self, endpoint_id):
        self.db.execute("DELETE FROM ports WHERE endpoint_id=?", (endpoint_id,))
        self.db.execute("DELETE FROM endpoints WHERE id=?", (endpoint_id,))

    def ports(self, endpoint_id=None) -> list[PortMapping]:
        q = "SELECT host_ip, host_port, container_port, proto FROM ports"
        rows = self._rows(q + " WHERE endpoint_id=?", (endpoint_id,)) if endpoint_id else self._rows(q)
        return [PortMapping(*r) for r in rows]

    def all_ports(self):
        """[(endpoint_id, PortMapping)]"""
        rows = self._rows("SELECT endpoint_id, host_ip, host_port, container_port, proto FROM ports")
        return [(r[0], PortMapping(*r[1:])) for r in rows]

    def insert_port(self, endpoint_id, p: PortMapping):
        self.db.execute("INSERT INTO ports VALUES (?,?,?,?,?)",
                        (endpoint_id, p.host_ip, p.host_port, p.container_port, p.proto))

    def delete_ports(self, endpoint_id):
        self.db.execute("DELETE FROM ports WHERE endpoint_id=?", (endpoint_id,))


class _Tx:
    def __init__(self, store):
        self.s = store

    def __enter__(self):
        self.s.lock.acquire()
        self.s.db.execute("BEGIN IMMEDIATE")
        return self.s

    def __exit__(self, exc_type, *_):
        try:
            self.s.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.s.lock.release()


def _network(r) -> Network:
    return Network(id=r[0], name=r[1], driver=r[2], subnet=r[3], gateway=r[4], ip_range=r[5],
                   internal=bool(r[6]), labels=json.loads(r[7]), options=json.loads(r[8]), bridge=r[9],
                   created=r[10])


def _endpoint(r) -> Endpoint:
    return Endpoint(id=r[0], network_id=r[1], container_id=r[2], name=r[3], aliases=json.loads(r[4]),
                    ifname=r[5], host_ifname=r[6], ip=r[7] or "", prefixlen=r[8], gateway=r[9], mac=r[10],
                    netns_path=r[11])
