"""TCP stream reassembly for SIP, per flow direction, bounded and driven by capture time.

Each direction of a connection is a :class:`TcpFlow` that puts segments back in sequence order
(out-of-order segments wait, retransmitted and overlapping bytes are trimmed), feeds the in-order byte
stream to :class:`spanscribe.protocols.sip.SipStreamFramer` and returns whole SIP messages. Memory is
bounded: at most ``max_bytes`` (1 MiB) of out-of-order data per flow, the framer's own 1 MiB cap, and
``max_flows`` flows in a :class:`TcpReassembler`. When a hole does not fill (the out-of-order buffer
is full, or it is older than ``gap_timeout_us`` of capture time) the flow skips the hole and the framer
resynchronises at the next SIP start line (heplify: src/decoder/tcpassembly.go does the same).
"""
from __future__ import annotations

from spanscribe.protocols.errors import MalformedInput, Reason
from spanscribe.protocols.sip import SipStreamFramer

from .decode import TCP_FIN, TCP_RST, TCP_SYN, Buffer

_MOD = 1 << 32
_HALF = 1 << 31


def seq_diff(a: int, b: int) -> int:
    """Signed distance b - a in 32-bit TCP sequence space (RFC 793 §3.3 modular comparison)."""
    d = (b - a) % _MOD
    return d - _MOD if d >= _HALF else d


class TcpFlow:
    """One direction of one TCP connection. See module doc."""

    __slots__ = ("next_seq", "ooo", "ooo_bytes", "ooo_since_us", "framer", "last_ts_us", "max_bytes",
                 "errors", "gaps", "tls")

    def __init__(self, max_bytes: int = 1 << 20) -> None:
        self.next_seq: int | None = None
        self.ooo: dict[int, bytes] = {}
        self.ooo_bytes = 0
        self.ooo_since_us = 0
        self.framer = SipStreamFramer(max_bytes)
        self.last_ts_us = 0
        self.max_bytes = max_bytes
        self.errors: list[MalformedInput] = []
        self.gaps = 0
        self.tls = False

    def segment(self, seq: int, flags: int, data: Buffer, ts_us: int) -> list[bytes]:
        """Add one segment; returns the SIP messages it completed (possibly several, possibly none).

        Framing errors are not raised but appended to :attr:`errors` (the caller counts and clears
        them), so one bad message never hides the good ones after it in the same segment.
        """
        self.last_ts_us = ts_us
        if flags & TCP_SYN:
            if self.next_seq is not None and seq_diff(self.next_seq, seq + 1) != 0:
                self._reset()
            self.next_seq = (seq + 1) % _MOD
            seq = (seq + 1) % _MOD  # SYN occupies one sequence number; data (rare) follows it
        n = len(data)
        if not n:
            return []
        if self.next_seq is None:  # picked up mid-stream: start here, the framer resyncs if needed
            self.next_seq = seq
            if data[0] in (0x14, 0x15, 0x16, 0x17) and n > 2 and data[1] == 3:
                self.tls = True  # TLS records: not readable, ignore the flow
        if self.tls:
            return []
        d = seq_diff(self.next_seq, seq)
        if d < 0:  # retransmission or overlap: trim what we already have
            if -d >= n:
                return []
            data = data[-d:]
            n = len(data)
            seq = self.next_seq
            d = 0
        if d > 0:
            if d > self.max_bytes * 4:  # far ahead: a lost stretch or a new incarnation; skip
                self._gap(seq)
                self.framer.feed(bytes(data))
                self.next_seq = (seq + n) % _MOD
                return self._drain_messages()
            if seq not in self.ooo or len(self.ooo[seq]) < n:
                if not self.ooo:
                    self.ooo_since_us = ts_us
                self.ooo_bytes += n - len(self.ooo.get(seq, b""))
                self.ooo[seq] = bytes(data)
            if self.ooo_bytes > self.max_bytes:
                self._skip_hole()
                return self._drain_messages()
            return []
        self.framer.feed(bytes(data))
        self.next_seq = (seq + n) % _MOD
        if self.ooo:
            self._pull_ooo()
        return self._drain_messages()

    def _pull_ooo(self) -> None:
        """Move buffered segments that now continue the stream into the framer."""
        progressed = True
        while progressed and self.ooo:
            progressed = False
            for s in list(self.ooo):
                d = seq_diff(self.next_seq, s)  # type: ignore[arg-type]
                if d > 0:
                    continue
                chunk = self.ooo.pop(s)
                self.ooo_bytes -= len(chunk)
                if -d < len(chunk):
                    self.framer.feed(chunk[-d:])
                    self.next_seq = (s + len(chunk)) % _MOD
                    progressed = True
        if not self.ooo:
            self.ooo_bytes = 0

    def _skip_hole(self) -> None:
        """Give up on the missing bytes: jump to the earliest buffered segment and resync."""
        if not self.ooo:
            return
        first = min(self.ooo, key=lambda s: seq_diff(self.next_seq, s))  # type: ignore[arg-type]
        self._gap(first)
        self._pull_ooo()

    def _gap(self, new_seq: int) -> None:
        self.gaps += 1
        # A fresh framer: the partial message before the hole can never complete. The framer
        # drops the bytes after the hole up to the next start line (counted as NOT_SIP).
        self.framer = SipStreamFramer(self.max_bytes)
        self.next_seq = new_seq
        self.errors.append(MalformedInput(Reason.BAD_TCP, "TCP: gap in stream, resynchronised"))

    def expire_hole(self, now_us: int, gap_timeout_us: int) -> list[bytes]:
        """Skip a hole that has waited longer than ``gap_timeout_us``; returns completed messages."""
        if self.ooo and now_us - self.ooo_since_us > gap_timeout_us:
            self._skip_hole()
            return self._drain_messages()
        return []

    def _reset(self) -> None:
        self.ooo.clear()
        self.ooo_bytes = 0
        self.framer = SipStreamFramer(self.max_bytes)
        self.tls = False

    def _drain_messages(self) -> list[bytes]:
        out: list[bytes] = []
        for _ in range(10000):  # bounded: each iteration consumes bytes or returns None
            try:
                msg = self.framer.next_message()
            except MalformedInput as exc:
                self.errors.append(exc)
                continue
            if msg is None:
                break
            out.append(msg)
        return out


FlowKey = tuple[bytes, int, bytes, int]


class TcpReassembler:
    """All TCP flows carrying SIP, bounded in number; flows idle past ``idle_timeout_us`` are dropped."""

    def __init__(self, max_flows: int = 16384, max_bytes: int = 1 << 20, idle_timeout_us: int = 300_000_000,
                 gap_timeout_us: int = 2_000_000) -> None:
        self.flows: dict[FlowKey, TcpFlow] = {}
        self.max_flows = max_flows
        self.max_bytes = max_bytes
        self.idle_timeout_us = idle_timeout_us
        self.gap_timeout_us = gap_timeout_us
        self.evicted = 0
        self.expired = 0

    def segment(self, key: FlowKey, seq: int, flags: int, data: Buffer, ts_us: int) -> tuple[list[bytes], list[MalformedInput]]:
        """Feed one segment of flow ``key``; returns (messages, errors)."""
        flow = self.flows.get(key)
        if flow is None:
            if flags & (TCP_RST | TCP_FIN) and not len(data):
                return [], []
            while len(self.flows) >= self.max_flows:
                del self.flows[next(iter(self.flows))]
                self.evicted += 1
            flow = TcpFlow(self.max_bytes)
            self.flows[key] = flow
        msgs = flow.segment(seq, flags, data, ts_us)
        errors: list[MalformedInput] = []
        if flow.errors:
            errors = flow.errors
            flow.errors = []
        if flags & (TCP_FIN | TCP_RST):
            self.flows.pop(key, None)
        return msgs, errors

    def expire(self, now_us: int) -> tuple[list[tuple[FlowKey, bytes]], int]:
        """Skip stale holes and drop idle flows. Returns (messages completed by skipping, flows dropped)."""
        out: list[tuple[FlowKey, bytes]] = []
        dead = []
        for key, flow in self.flows.items():
            if now_us - flow.last_ts_us > self.idle_timeout_us:
                dead.append(key)
                continue
            for m in flow.expire_hole(now_us, self.gap_timeout_us):
                out.append((key, m))
        for key in dead:
            del self.flows[key]
        self.expired += len(dead)
        return out, len(dead)
