"""The event stream (``docker events``): a bounded ring of past events plus live subscribers.

Events are kept in memory only, like Docker's (1024 of them here); a subscriber first gets the past
events in its [since, until] window, then live ones until ``until``. Emitting never blocks: a
subscriber that stops reading and falls far behind is cut off rather than slowing the engine.
The message shape is Docker's (``Type``, ``Action``, ``Actor``, ``time``/``timeNano``, and the
legacy ``status``/``id``/``from`` for containers and images).
"""

from __future__ import annotations

import asyncio
import collections
import time

from dockyard import errdefs

RING_SIZE = 1024
_BACKLOG_MAX = 10000  # queued events per subscriber before it is dropped
_FILTERS = {"type", "event", "container", "image", "label", "network", "volume", "scope", "daemon", "plugin",
            "node", "service", "secret", "config"}


def make_event(type_: str, action: str, actor_id: str, attributes: dict | None = None,
               time_ns: int | None = None) -> dict:
    ns = time.time_ns() if time_ns is None else time_ns
    attrs = {k: str(v) for k, v in (attributes or {}).items()}
    ev = {"Type": type_, "Action": action, "Actor": {"ID": actor_id, "Attributes": attrs},
          "scope": "local", "time": ns // 1_000_000_000, "timeNano": ns}
    if type_ in ("container", "image"):  # the pre-1.22 fields, still sent by moby for these
        legacy = {"status": action, "id": actor_id}
        if type_ == "container" and "image" in attrs:
            legacy["from"] = attrs["image"]
        ev = {**legacy, **ev}
    return ev


def check_filters(filters: dict) -> None:
    for k in filters:
        if k not in _FILTERS:
            raise errdefs.InvalidArgument(f"invalid filter '{k}'")


def matches(ev: dict, filters: dict) -> bool:
    """moby's events filter: OR within a key, AND across keys."""
    attrs = ev["Actor"]["Attributes"]
    typ, actor = ev["Type"], ev["Actor"]["ID"]
    for key, wanted in filters.items():
        if not wanted:
            continue
        if key == "type":
            ok = typ in wanted
        elif key == "event":
            # exec actions carry the command ("exec_start: sh -c ..."); the filter names the action.
            ok = ev["Action"].split(":", 1)[0] in wanted
        elif key in ("container", "network", "volume"):
            ok = typ == key and any(w == actor or (len(w) >= 1 and actor.startswith(w)) or w == attrs.get("name")
                                    for w in wanted)
        elif key == "image":
            image = attrs.get("image") if typ == "container" else (attrs.get("name") or actor)
            ok = any(w == image or w == actor or (image and image.split(":")[0] == w) for w in wanted)
        elif key == "label":
            ok = any(_label_match(attrs, w) for w in wanted)
        elif key == "scope":
            ok = "local" in wanted
        else:
            ok = False
        if not ok:
            return False
    return True


def _label_match(attrs: dict, w: str) -> bool:
    k, eq, v = w.partition("=")
    return k in attrs and (not eq or attrs[k] == v)


class EventLog:
    def __init__(self, size: int = RING_SIZE):
        self._ring: collections.deque = collections.deque(maxlen=size)
        self._subscribers: set[asyncio.Queue] = set()
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop subscribers wait on

    def emit(self, type_: str, action: str, actor_id: str, attributes: dict | None = None) -> dict:
        """Record an event; callable from the event loop or from a worker thread (image store
        calls and pulls run in threads, and asyncio queues may only be fed from their loop)."""
        ev = make_event(type_, action, actor_id, attributes)
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if self._loop is not None and here is not self._loop and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._publish, ev)
        else:
            self._publish(ev)
        return ev

    def _publish(self, ev: dict) -> None:
        self._ring.append(ev)
        for q in list(self._subscribers):
            if q.qsize() >= _BACKLOG_MAX:
                self._subscribers.discard(q)
                q.put_nowait(None)  # ends that subscription
            else:
                q.put_nowait(ev)
        return ev

    async def stream(self, since_ns: int = 0, until_ns: int = 0, filters: dict | None = None):
        """Past events in the window, then live ones; ends at ``until_ns`` (never without it)."""
        filters = filters or {}
        check_filters(filters)
        self._loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        live = not until_ns or until_ns > time.time_ns()
        if live:
            self._subscribers.add(q)  # before the replay: nothing falls between the two
        try:
            # As moby: the past is replayed only when a window was given. Subscribing and taking
            # the snapshot happen with no await in between, so nothing is seen twice.
            if since_ns or until_ns:
                for ev in list(self._ring):
                    if ev["timeNano"] >= since_ns and (not until_ns or ev["timeNano"] <= until_ns) \
                            and matches(ev, filters):
                        yield ev
            while live:
                left = None if not until_ns else (until_ns - time.time_ns()) / 1e9
                if left is not None and left <= 0:
                    return
                try:
                    ev = await asyncio.wait_for(q.get(), left)
                except asyncio.TimeoutError:
                    return
                if ev is None:
                    return
                if until_ns and ev["timeNano"] > until_ns:
                    return
                if matches(ev, filters):
                    yield ev
        finally:
            self._subscribers.discard(q)


class EventingImages:
    """The image store as the engine hands it out, emitting image events for what the API layer
    does with it directly (tag, import, load, save). Store calls run in worker threads, so the
    events are handed to the loop thread-safely."""

    def __init__(self, store, log: EventLog, loop: asyncio.AbstractEventLoop):
        self._store, self._log, self._loop = store, log, loop

    def __getattr__(self, name):
        return getattr(self._store, name)

    def _emit(self, action: str, ref: str, image_id: str | None = None):
        self._loop.call_soon_threadsafe(self._log.emit, "image", action, image_id or ref, {"name": ref})

    def tag(self, ref: str, new_ref: str) -> None:
        self._store.tag(ref, new_ref)
        name = new_ref if ":" in new_ref.rsplit("/", 1)[-1] else new_ref + ":latest"
        try:
            image_id = self._store.resolve(new_ref).id
        except Exception:  # noqa: BLE001 - untagged meanwhile; the event still names it
            image_id = None
        self._emit("tag", name, image_id)

    def import_rootfs(self, fileobj, ref=None, *a, **kw):
        image = self._store.import_rootfs(fileobj, ref, *a, **kw)
        self._emit("import", getattr(image, "id", "") or str(ref or ""))
        return image

    def load(self, fileobj, *a, **kw):
        names = self._store.load(fileobj, *a, **kw)
        for n in names or ():
            self._emit("load", n)
        return names

    def save(self, refs, fileobj, *a, **kw):
        self._store.save(refs, fileobj, *a, **kw)
        for r in ([refs] if isinstance(refs, str) else refs):
            self._emit("save", r)
