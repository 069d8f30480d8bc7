"""Which input records may be acknowledged (their offsets committed): the bookkeeping behind
"commit behind the STT checkpoint".

An RTP record is *covered* once every speaker audio handed to STT while handling it lies before that
speaker's coverage (call time, seconds): the end of its last final result, or the end of all audio sent
once its session closed with its last final. A record is released (acknowledged) only as part of the
covered prefix of its partition, in offset order, so the consumer commits exactly the released records
and a restarted worker re-reads from the oldest uncovered one (the STT checkpoints skip what was
finalised). Two bounds keep a silent speaker or a dead STT server from holding commits forever: a
record older than ``max_hold_us`` of capture time (behind its partition's newest record) AND held for
``max_hold_wall_s`` of wall time, or beyond ``max_records`` held in its partition, is released anyway
and counted in ``forced``. Both clocks, because in a backlog (a restarted worker catching up) capture
time runs hundreds of times faster than the STT server answers: by capture time alone every record
would be released before its final result came back.

Pure: capture time is passed in; tokens are opaque (the Faust event to acknowledge); a "partition" is any
hashable naming one ordered input (the worker uses the partition number for the rtp topic and
``("rtp-by-source", n)`` for the NAT fallback topic).
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

Claim = tuple[Hashable, float]  # (speaker key, call time in s the speaker's coverage must reach)


@dataclass
class _Held:
    offset: int
    capture_us: int
    token: Any
    claims: dict[Hashable, float] = field(default_factory=dict)
    wall_s: float = 0.0


@dataclass
class AckTracker:
    """Held records per partition, speaker coverage, and release in offset order."""

    max_hold_us: int = 30_000_000
    max_records: int = 4096
    max_hold_wall_s: float = 0.0  # 0: the capture-time bound alone
    covered: dict[Hashable, float] = field(default_factory=dict)
    forced: dict[str, int] = field(default_factory=lambda: {"age": 0, "count": 0})
    _held: dict[Hashable, deque[_Held]] = field(default_factory=dict)
    _newest_us: dict[Hashable, int] = field(default_factory=dict)

    def cover(self, key: Hashable, upto_s: float) -> None:
        """The speaker's audio before call time ``upto_s`` needs no more STT (never moves back)."""
        if upto_s > self.covered.get(key, -math.inf):
            self.covered[key] = upto_s

    def forget(self, key: Hashable) -> None:
        """Drop a speaker's coverage (its done marker expired); claims on it still held stay held."""
        self.covered.pop(key, None)

    def _open(self, claims: Iterable[Claim]) -> dict[Hashable, float]:
        out: dict[Hashable, float] = {}
        for key, end_s in claims:
            if end_s > self.covered.get(key, -math.inf) and end_s > out.get(key, -math.inf):
                out[key] = end_s
        return out

    def hold(self, partition: Hashable, offset: int, capture_us: int, token: Any, claims: Iterable[Claim] = (),
             wall_s: float = 0.0) -> None:
        """Record one input record of ``partition`` (offsets arrive in increasing order per partition);
        ``wall_s``: a monotonic wall clock reading when it was handled."""
        q = self._held.setdefault(partition, deque())
        q.append(_Held(offset, capture_us, token, self._open(claims), wall_s))
        if capture_us > self._newest_us.get(partition, -1):
            self._newest_us[partition] = capture_us

    def claim_latest(self, partition: Hashable, claims: Iterable[Claim]) -> bool:
        """Audio produced outside a record's handling (a jitter gap released by the clock, pending RTP
        joined by a late binding): add its claims to the newest record held in ``partition``.
        False when none is held (the audio's records were released already)."""
        q = self._held.get(partition)
        if not q:
            return False
        for key, end_s in self._open(claims).items():
            if end_s > q[-1].claims.get(key, -math.inf):
                q[-1].claims[key] = end_s
        return True

    def _is_covered(self, h: _Held) -> bool:
        cov = self.covered
        return all(end_s <= cov.get(key, -math.inf) for key, end_s in h.claims.items())

    def release(self, partition: Hashable, now_us: int | None = None, wall_now_s: float | None = None) -> list[Any]:
        """Tokens of the longest releasable prefix of ``partition``, oldest first. ``now_us``: the
        partition's capture clock (defaults to its newest record held); ``wall_now_s``: the wall clock
        of ``hold`` (None: the wall-time bound is not applied)."""
        q = self._held.get(partition)
        if not q:
            return []
        now = max(now_us if now_us is not None else -1, self._newest_us.get(partition, -1))
        out: list[Any] = []
        while q:
            h = q[0]
            if not self._is_covered(h):
                if now - h.capture_us > self.max_hold_us and (
                        wall_now_s is None or wall_now_s - h.wall_s >= self.max_hold_wall_s):
                    self.forced["age"] += 1
                elif len(q) > self.max_records:
                    self.forced["count"] += 1
                else:
                    break
            q.popleft()
            out.append(h.token)
        return out

    def release_all(self) -> dict[Hashable, list[Any]]:
        """Release every partition as far as it goes (after coverage moved)."""
        return {p: toks for p in list(self._held) if (toks := self.release(p))}

    def revoke(self, partition: Hashable) -> int:
        """The partition went to another worker: forget its held records (never acknowledged here, so
        the new owner reads them again). Returns how many were dropped."""
        q = self._held.pop(partition, None)
        self._newest_us.pop(partition, None)
        return len(q) if q else 0

    def partitions(self) -> list[Hashable]:
        """Partitions with records held (in the order first seen)."""
        return [p for p, q in self._held.items() if q]

    def held(self, partition: Hashable | None = None) -> int:
        if partition is not None:
            return len(self._held.get(partition) or ())
        return sum(len(q) for q in self._held.values())

    def oldest_age_us(self) -> int:
        """Capture time between the oldest held record and its partition's newest one (0 if none)."""
        ages = [self._newest_us.get(p, q[0].capture_us) - q[0].capture_us for p, q in self._held.items() if q]
        return max(ages, default=0)

    def first_held_offset(self, partition: Hashable) -> int | None:
        q = self._held.get(partition)
        return q[0].offset if q else None
