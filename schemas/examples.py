"""One small, valid example record of every schema: for docs, the smoke command and contract tests."""
from __future__ import annotations

from typing import Any

from schemas.rtp_columns import pack_stream

_INVITE = (b"INVITE sip:bob@10.0.0.20 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.10:5060;branch=z9hG4bK1\r\n"
           b"From: <sip:alice@10.0.0.10>;tag=a1\r\nTo: <sip:bob@10.0.0.20>\r\nCall-ID: example-1\r\n"
           b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
T0 = 1_700_000_000_000_000


def example_records() -> dict[str, dict[str, Any]]:
    """{schema name: record dict}."""
    stream = pack_stream(stream_key="demo/10.0.0.10/40000", src_ip="10.0.0.20", src_port=50000,
                         dst_ip="10.0.0.10", dst_port=40000, ssrc=0x1234ABCD, seq=[65534, 65535, 0],
                         rtp_ts=[4294967136, 0, 160], capture_us=[T0, T0 + 20_000, T0 + 40_000],
                         payload_type=[0, 0, 0], marker=[True, False, False],
                         payloads=[b"\xff" * 160, b"\x7f" * 160, b"\xfe" * 160])
    return {
        "SipMessage": {
            "site": "demo", "edge_id": "edge-1", "edge_seq": 0, "edge_start_us": T0, "capture_ts_us": T0,
            "transport": "udp", "src_ip": "10.0.0.10", "src_port": 5060, "dst_ip": "10.0.0.20", "dst_port": 5060,
            "raw": _INVITE, "call_id": "example-1", "is_request": True, "method": "INVITE", "status_code": None,
            "cseq_num": 1, "cseq_method": "INVITE", "from_tag": "a1", "to_tag": None,
            "sdp_media": [{"media": "audio", "connection_ip": "10.0.0.10", "port": 40000, "proto": "RTP/AVP",
                           "payload_types": [0, 101], "direction": "sendrecv"}],
        },
        "RtpBatch": {"site": "demo", "edge_id": "edge-1", "edge_start_us": T0, "batch_seq": 0,
                     "flush_ts_us": T0 + 100_000, "streams": [stream]},
        "MediaBinding": {
            "stream_key": "demo/10.0.0.10/40000", "site": "demo", "call_id": "example-1", "speaker": "callee",
            "role": "customer", "call_start_us": T0, "valid_from_us": T0, "valid_until_us": None, "version": 1,
            "encrypted": False,
            "payload_map": [{"payload_type": 0, "encoding": "PCMU", "clock_rate": 8000, "channels": 1, "fmtp": None},
                            {"payload_type": 101, "encoding": "telephone-event", "clock_rate": 8000,
                             "channels": 1, "fmtp": "0-16"}],
        },
        "TranscriptSegment": {
            "segment_id": "0f3c5d1e2a9b8c7d6e5f", "site": "demo", "call_id": "example-1", "speaker": "callee",
            "role": "customer", "is_final": True, "start_s": 1.5, "end_s": 2.25, "text": "hello there",
            "words": [{"word": "hello", "start_s": 1.5, "end_s": 1.8, "conf": 0.875},
                      {"word": "there", "start_s": 1.9, "end_s": 2.25, "conf": 0.75}],
            "engine": "vosk:ws://127.0.0.1:2700",
        },
        "CallTranscript": {
            "site": "demo", "call_id": "example-1", "caller": "sip:alice@10.0.0.10", "callee": "sip:bob@10.0.0.20",
            "start_us": T0, "answer_us": T0 + 2_000_000, "end_us": T0 + 20_000_000, "end_reason": "bye",
            "segments": [{"speaker": "callee", "role": "customer", "start_s": 1.5, "end_s": 2.25,
                          "text": "hello there"}],
            "streams": [{"speaker": "callee", "stream_key": "demo/10.0.0.10/40000", "ssrc": 0x1234ABCD,
                         "codec": "PCMU", "packets": 3, "lost": 0, "duplicates": 0, "jitter_ms": 0.0, "audio_s": 0.06}],
            "notes": [],
        },
        "CallEvent": {
            "site": "demo", "call_id": "example-1", "kind": "call_ended", "ts_us": T0 + 20_000_000,
            "caller": "sip:alice@10.0.0.10", "callee": "sip:bob@10.0.0.20", "start_us": T0,
            "answer_us": T0 + 2_000_000, "end_reason": "bye", "speakers": ["caller", "callee"],
            "stream": None, "note": None,
        },
    }
