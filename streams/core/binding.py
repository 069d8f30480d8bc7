"""Media side lookup: stream key -> the MediaBinding valid at a capture time.

Ports are reused by later calls, so a binding holds for a time range ``[valid_from_us,
valid_until_us)`` (open-ended while ``valid_until_us`` is None), never forever. When ranges overlap
(a call that never saw its BYE and a later call on the same port) the binding that started last wins.

The store is any ``MutableMapping[str, list[dict]]`` (a dict, or a Faust table: entries are always
reassigned, never mutated in place, so a table changelogs every change). Values are JSON-able.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

__all__ = ["BindingIndex"]

Binding = dict[str, Any]


class BindingIndex:
    """Bindings per stream key (``"site/ip/port"``), ordered by ``valid_from_us``."""

    def __init__(self, store: MutableMapping[str, list[Binding]] | None = None, max_per_key: int = 16) -> None:
        self.store: MutableMapping[str, list[Binding]] = store if store is not None else {}
        self.max_per_key = max_per_key

    def apply(self, binding: Binding) -> None:
        """Insert a binding, or replace the one with the same (call_id, version, speaker) (a close).

        Keeps at most ``max_per_key`` bindings per key (the oldest closed ones go first).
        """
        key = str(binding["stream_key"])
        cur = [b for b in self.store.get(key, [])
               if not (b["call_id"] == binding["call_id"] and b["version"] == binding["version"]
                       and b["speaker"] == binding["speaker"])]
        cur.append(dict(binding))
        cur.sort(key=lambda b: (int(b["valid_from_us"]), int(b["version"]), str(b["call_id"])))
        while len(cur) > self.max_per_key:
            closed = [i for i, b in enumerate(cur) if b.get("valid_until_us") is not None]
            cur.pop(closed[0] if closed else 0)
        self.store[key] = cur

    def lookup(self, stream_key: str, ts_us: int) -> Binding | None:
        """The binding of ``stream_key`` valid at capture time ``ts_us`` (µs), or None."""
        best: Binding | None = None
        for b in self.store.get(stream_key, ()):
            if int(b["valid_from_us"]) > ts_us:
                break
            until = b.get("valid_until_us")
            if until is not None and ts_us >= int(until):
                continue
            best = b  # ordered by valid_from: the last match started last
        return best

    def bindings(self, stream_key: str) -> list[Binding]:
        """All bindings held for a key (oldest first)."""
        return list(self.store.get(stream_key, ()))

    def open_for(self, stream_key: str, call_id: str, speaker: str) -> list[Binding]:
        """Open bindings (no ``valid_until_us``) of one call speaker on a key."""
        return [b for b in self.store.get(stream_key, ())
                if b["call_id"] == call_id and b["speaker"] == speaker and b.get("valid_until_us") is None]

    def expire(self, now_us: int, keep_closed_us: int = 3_600_000_000) -> int:
        """Forget bindings closed more than ``keep_closed_us`` before ``now_us``. Returns how many."""
        dropped = 0
        for key in list(self.store.keys()):
            cur = self.store[key]
            keep = [b for b in cur if b.get("valid_until_us") is None or int(b["valid_until_us"]) + keep_closed_us > now_us]
            if len(keep) != len(cur):
                dropped += len(cur) - len(keep)
                if keep:
                    self.store[key] = keep
                else:
                    del self.store[key]
        return dropped
