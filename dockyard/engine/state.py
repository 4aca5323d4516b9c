"""The engine's persistent state: one SQLite file, two tables of JSON rows.

``containers`` holds every Container field (state included) as JSON, with the name in its own column
under a UNIQUE index: the row insert is create's commit point and the index is what makes two
concurrent creates with one name impossible. ``volumes`` holds volume metadata. WAL with
synchronous=FULL: a write that returned survives a power cut. Calls are short and serialized by a lock,
so the engine may call them from worker threads or directly from the loop.
"""

import dataclasses
import json
import sqlite3
import threading

from dockyard.engine import Container, State, Volume, names

_SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (id TEXT PRIMARY KEY, name TEXT NOT NULL, data TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS containers_name ON containers(name);
CREATE TABLE IF NOT EXISTS volumes (name TEXT PRIMARY KEY, data TEXT NOT NULL);
"""


def container_from_json(text: str) -> Container:
    # Unknown keys are dropped so that a row written by a newer version still loads.
    d = json.loads(text)
    known = {f.name for f in dataclasses.fields(Container)}
    state_known = {f.name for f in dataclasses.fields(State)}
    d["state"] = State(**{k: v for k, v in d["state"].items() if k in state_known})
    return Container(**{k: v for k, v in d.items() if k in known})


class StateDB:
    def __init__(self, path: str):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self):
        with self._lock:
            self._db.close()

    def containers(self) -> list[Container]:
        with self._lock:
            rows = self._db.execute("SELECT data FROM containers").fetchall()
        return [container_from_json(r[0]) for r in rows]

    def insert_container(self, c: Container):
        try:
            with self._lock:
                self._db.execute("INSERT INTO containers VALUES (?,?,?)",
                                 (c.id, c.name, json.dumps(dataclasses.asdict(c))))
        except sqlite3.IntegrityError as e:
            raise names.conflict(c.name, self._owner(c.name)) from e

    def _owner(self, name: str) -> str:
        with self._lock:
            row = self._db.execute("SELECT id FROM containers WHERE name=?", (name,)).fetchone()
        return row[0] if row else ""

    def update_container(self, c: Container):
        """Write every field of ``c``; a rename violating the index raises AlreadyExists."""
        try:
            with self._lock:
                self._db.execute("UPDATE containers SET name=?, data=? WHERE id=?",
                                 (c.name, json.dumps(dataclasses.asdict(c)), c.id))
        except sqlite3.IntegrityError as e:
            raise names.conflict(c.name, self._owner(c.name)) from e

    def delete_container(self, cid: str):
        with self._lock:
            self._db.execute("DELETE FROM containers WHERE id=?", (cid,))

    def volumes(self) -> list[Volume]:
        with self._lock:
            rows = self._db.execute("SELECT data FROM volumes").fetchall()
        return [Volume(**json.loads(r[0])) for r in rows]

    def put_volume(self, v: Volume):
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO volumes VALUES (?,?)",
                             (v.name, json.dumps(dataclasses.asdict(v))))

    def delete_volume(self, name: str):
        with self._lock:
            self._db.execute("DELETE FROM volumes WHERE name=?", (name,))
