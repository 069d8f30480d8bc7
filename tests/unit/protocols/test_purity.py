"""The protocol package is pure: no I/O, clocks, asyncio, logging handlers, Kafka or Faust."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import spanscribe.protocols
from spanscribe.protocols import dtmf, sdp, sip
from spanscribe.protocols.rtp import build_rtp, parse_rtcp, parse_rtp

PKG = Path(spanscribe.protocols.__file__).parent
FORBIDDEN = {"socket", "asyncio", "time", "datetime", "threading", "select", "selectors", "logging", "faust",
             "confluent_kafka", "aiokafka", "kafka", "dpkt", "os", "subprocess", "random"}


def test_sources_import_nothing_impure() -> None:
    files = sorted(PKG.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "errors.py", "sip.py", "sdp.py", "rtp.py", "dtmf.py"}
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for n in names:
                assert n.split(".")[0] not in FORBIDDEN, f"{f.name} imports {n}"


def test_import_pulls_in_no_io_modules() -> None:
    code = (
        "import sys; before = set(sys.modules); import spanscribe.protocols; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         cwd=PKG.parents[1]).stdout.split()
    assert "spanscribe.protocols" in out
    bad = {m for m in out if m.split(".")[0] in FORBIDDEN - {"os", "time"}}
    assert not bad


def test_buffers_of_any_kind_accepted() -> None:
    raw = sip.build_message("INVITE sip:x SIP/2.0", [("Call-ID", "mv"), ("Content-Type", "application/sdp")],
                            b"v=0\r\nm=audio 5 RTP/AVP 0\r\n")
    for buf in (raw, bytearray(raw), memoryview(raw)):
        assert sip.looks_like_sip(buf)
        m = sip.parse(buf)
        assert m.call_id == "mv"
        assert sdp.parse(memoryview(m.sdp_bodies()[0])).media[0].port == 5
        f = sip.SipStreamFramer()
        f.feed(buf)
        assert f.next_message() == raw
    pkt = build_rtp(payload_type=101, sequence=1, timestamp=2, ssrc=3, payload=b"\x01\x8a\x00\xa0")
    for pbuf in (pkt, bytearray(pkt), memoryview(pkt)):
        h = parse_rtp(pbuf)
        assert dtmf.parse(memoryview(pkt)[h.payload_offset:]).duration_ticks == 160
    rr = bytearray(b"\x80\xc9\x00\x01\x00\x00\x00\x07")
    assert parse_rtcp(rr)[0].ssrc == 7
