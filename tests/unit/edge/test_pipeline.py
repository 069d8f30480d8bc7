"""The pipeline on crafted traffic: SIP records, endpoint learning and closing, RTP batches, RTCP."""
from __future__ import annotations

import gzip
import io
import random
import struct

import pytest
from edgefakes import eth, ipv4, rtp, sip_bye, sip_invite, sip_response, udp, write_pcap, write_pcapng

from edge_capture.pcapfile import PcapError, open_capture, read_capture
from edge_capture.pipeline import EdgeConfig, EdgePipeline, _Stream, pack_entry
from edge_capture.sinks import DryRunSink
from schemas.codec import AvroCodec
from schemas.rtp_columns import pack_stream, unpack_stream
from spanscribe.partitioning import partition_for

T0 = 1_700_000_000_000_000
A, B = "10.0.0.1", "10.0.0.2"


def call_frames(n_rtp: int = 50, call_id: str = "abc@test", bye: bool = True, extra_after_bye_s: float = 0.0):
    """INVITE (A offers 10.0.0.1:40000) / 200 (B answers 10.0.0.2:50000) / RTP both ways / BYE."""
    fr = [(T0, eth(ipv4(A, B, 17, udp(5060, 5060, sip_invite(call_id, A, 40000))))),
          (T0 + 1000, eth(ipv4(B, A, 17, udp(5060, 5060, sip_response(200, call_id, sdp_ip=B, sdp_port=50000)))))]
    t = T0 + 10_000
    for i in range(n_rtp):
        fr.append((t, eth(ipv4(A, B, 17, udp(40000, 50000, rtp(i, i * 160, 0xAAAA))))))
        fr.append((t + 100, eth(ipv4(B, A, 17, udp(50000, 40000, rtp(1000 + i, i * 160, 0xBBBB, marker=i == 0))))))
        t += 20_000
    # RTCP on port + 1 is counted, not forwarded
    fr.append((t, eth(ipv4(A, B, 17, udp(40001, 50001, struct.pack("!BBHI", 0x80, 200, 6, 0xAAAA) + b"\0" * 20)))))
    if bye:
        fr.append((t + 1000, eth(ipv4(A, B, 17, udp(5060, 5060, sip_bye(call_id))))))
    if extra_after_bye_s:
        t2 = t + int(extra_after_bye_s * 1e6)
        fr.append((t2, eth(ipv4(A, B, 17, udp(40000, 50000, rtp(999, 0, 0xAAAA))))))
    return fr


def run(frames, consume: bool = False, **cfg):
    sink = DryRunSink(rtp_partitions=cfg.pop("partitions", 4), keep=True)
    p = EdgePipeline(EdgeConfig(site="lab", edge_id="e1", **cfg), sink)
    if consume:
        p.consume((ts, 1, fr) for ts, fr in frames)
    else:
        for ts, fr in frames:
            p.process(ts, 1, fr)
    p.finish()
    return p, sink


def _rtp_by_stream(sink):
    out: dict[tuple, list] = {}
    for part, key, rec in sink.rtp:
        assert key == f"lab/e1/{part}".encode()
        for e in rec["streams"]:
            assert partition_for(e["stream_key"].encode(), 4) == part
            cols = unpack_stream(e)
            out.setdefault((e["src_port"], e["dst_port"], e["ssrc"]), []).extend(cols.seq.tolist())
    return out


@pytest.mark.parametrize("consume", [False, True])
def test_call_records(consume):
    p, sink = run(call_frames(), consume=consume)
    s = p.summary()
    assert s["sip_messages"] == 3 and s["sip_methods"] == {"BYE": 1, "INVITE": 1} and s["sip_responses"] == {"200": 1}
    assert s["rtp_packets"] == 100 and s["rtcp_packets"] == 1 and s["calls"] == 1
    assert [k for k, _ in sink.sip] == [b"lab/abc@test"] * 3
    inv = sink.sip[0][1]
    assert inv["method"] == "INVITE" and inv["edge_seq"] == 1 and inv["transport"] == "udp"
    assert inv["sdp_media"][0]["port"] == 40000 and inv["sdp_media"][0]["connection_ip"] == A
    codec = AvroCodec("SipMessage")
    for _, rec in sink.sip:
        assert codec.decode(codec.encode(rec))["raw"] == rec["raw"]
    by = _rtp_by_stream(sink)
    assert by[(40000, 50000, 0xAAAA)] == list(range(50))
    assert by[(50000, 40000, 0xBBBB)] == list(range(1000, 1050))
    rcodec = AvroCodec("RtpBatch")
    seqs: dict[int, list[int]] = {}
    for part, _key, rec in sink.rtp:
        assert rcodec.decode(rcodec.encode(rec))["streams"]
        seqs.setdefault(part, []).append(rec["batch_seq"])
    for v in seqs.values():
        assert v == list(range(len(v)))
    # stream key is the receiving endpoint
    keys = {(e["src_port"], e["stream_key"]) for _, _, rec in sink.rtp for e in rec["streams"]}
    assert keys == {(40000, "lab/10.0.0.2/50000"), (50000, "lab/10.0.0.1/40000")}
    st = {x["ssrc"]: x for x in s["rtp_streams"]}
    assert st[0xAAAA]["packets"] == 50 and st[0xAAAA]["lost"] == 0 and st[0xAAAA]["payload_type"] == 8


def test_flush_interval_by_capture_time():
    p, sink = run(call_frames(n_rtp=50), flush_us=100_000)
    # 50 packets per direction at 20 ms = 1 s of media -> about 10 flushes, each with both streams
    assert 9 <= len({rec["batch_seq"] for _, _, rec in sink.rtp if _ == 0} | {0}) <= 12 or len(sink.rtp) >= 9
    for _, _, rec in sink.rtp:
        for e in rec["streams"]:
            cols = unpack_stream(e)
            assert cols.capture_us.max() - cols.capture_us.min() < 100_000


def test_max_batch_packets_flushes_early():
    _, sink = run(call_frames(n_rtp=50), max_batch_packets=7, flush_us=10_000_000, partitions=1)
    assert all(sum(e["count"] for e in rec["streams"]) <= 7 for _, _, rec in sink.rtp)
    assert sum(e["count"] for _, _, rec in sink.rtp for e in rec["streams"]) == 100


def test_endpoints_close_after_bye_grace():
    p, _ = run(call_frames(extra_after_bye_s=40.0), rtp_grace_us=30_000_000)
    assert p.stats.rtp_packets == 100  # the packet 40 s after BYE (grace 30 s) is not forwarded
    p, _ = run(call_frames(extra_after_bye_s=10.0), rtp_grace_us=30_000_000)
    assert p.stats.rtp_packets == 101


def test_final_error_closes_but_auth_challenge_does_not():
    fr = [(T0, eth(ipv4(A, B, 17, udp(5060, 5060, sip_invite("x", A, 40000))))),
          (T0 + 1, eth(ipv4(B, A, 17, udp(5060, 5060, sip_response(407, "x"))))),
          (T0 + 40_000_000, eth(ipv4(B, A, 17, udp(5060, 5060, sip_response(486, "x"))))),
          (T0 + 80_000_000, eth(ipv4(B, A, 17, udp(50000, 40000, rtp(1, 1, 1)))))]
    p, _ = run(fr)
    assert p.stats.rtp_packets == 0 and not p.endpoints


def test_symmetric_rtp_by_source():
    fr = call_frames(n_rtp=0, bye=False)
    # B's media arrives from a NAT address/port nobody announced, sent to A's announced endpoint: dst match.
    # A's media sent to the NAT address: matched by its (announced) source.
    fr.append((T0 + 20_000, eth(ipv4(A, "192.0.2.99", 17, udp(40000, 61000, rtp(1, 1, 7))))))
    p, sink = run(fr)
    assert p.stats.rtp_packets == 1
    assert sink.rtp[0][2]["streams"][0]["stream_key"] == "lab/192.0.2.99/61000"


def test_sdp_mode_ignores_unsignalled_rtp_heuristic_takes_it():
    fr = [(T0 + i * 20_000, eth(ipv4(A, B, 17, udp(16000, 16002, rtp(i, i * 160, 5))))) for i in range(10)]
    p, _ = run(fr)
    assert p.stats.rtp_packets == 0
    p, _ = run(fr, rtp_mode="heuristic", rtp_ports=(10000, 65535))
    assert p.stats.rtp_packets == 10
    p, _ = run(fr, rtp_mode="heuristic", rtp_ports=(20000, 30000))
    assert p.stats.rtp_packets == 0


def test_rtcp_mux_is_counted_not_forwarded():
    fr = call_frames(n_rtp=2, bye=False)
    fr.append((T0 + 90_000, eth(ipv4(A, B, 17, udp(40000, 50000, struct.pack("!BBHI", 0x81, 201, 7, 1) + b"\0" * 24)))))
    p, _ = run(fr)
    assert p.stats.rtcp_packets == 2 and p.stats.rtp_packets == 4


def test_csrc_and_padding_take_the_parser_path():
    fr = call_frames(n_rtp=1, bye=False)
    pkt = struct.pack("!BBHII", 0xA1, 8, 77, 1, 0xCC) + struct.pack("!I", 5) + b"\x01\x02\x03" + b"\0\0\x03"
    fr.append((T0 + 90_000, eth(ipv4(A, B, 17, udp(40000, 50000, pkt)))))
    _, sink = run(fr)
    ents = [e for _, _, rec in sink.rtp for e in rec["streams"] if e["ssrc"] == 0xCC]
    assert ents and unpack_stream(ents[0]).payload(0) == b"\x01\x02\x03"


def test_pack_entry_equals_pack_stream():
    rnd = random.Random(1)
    for n in (1, 5, 100):
        s = _Stream((b"\x01\x02\x03\x04", 10, b"\x05\x06\x07\x08", 20, 0xDEADBEEF), "k/5.6.7.8/20", 0, "1.2.3.4", "5.6.7.8")
        seq = [rnd.randrange(65536) for _ in range(n)]
        ts = [rnd.randrange(1 << 32) for _ in range(n)]
        cap = sorted(T0 + rnd.randrange(100_000) for _ in range(n))
        pt = [rnd.randrange(128) for _ in range(n)]
        mk = [rnd.random() < 0.5 for _ in range(n)]
        pls = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(200))) for _ in range(n)]
        s.base = cap[0]
        for i in range(n):
            s.seq.append(seq[i])
            s.ts.append(ts[i])
            s.off.append(cap[i] - cap[0])
            s.ptm.append(pt[i] | (0x80 if mk[i] else 0))
            s.plen.append(len(pls[i]))
            s.pl.append(pls[i])
        ref = pack_stream(stream_key=s.stream_key, src_ip="1.2.3.4", src_port=10, dst_ip="5.6.7.8", dst_port=20,
                          ssrc=0xDEADBEEF, seq=seq, rtp_ts=ts, capture_us=cap, payload_type=pt, marker=mk, payloads=pls)
        assert pack_entry(s) == ref


def test_consume_equals_process():
    fr = call_frames(n_rtp=80) + call_frames(n_rtp=30, call_id="second")
    fr.sort(key=lambda x: x[0])
    p1, s1 = run(fr)
    p2, s2 = run(fr, consume=True)
    assert p1.summary() == p2.summary()
    assert [r for _, _, r in s1.rtp] == [r for _, _, r in s2.rtp]


def test_bad_input_is_counted_not_raised():
    fr = call_frames(n_rtp=2, bye=False)
    fr.append((T0 + 90_000, eth(ipv4(A, B, 17, udp(5060, 5060, b"INVITE garbage\r\n\r\n")))))
    fr.append((T0 + 90_001, eth(b"\x45\x00", 0x0800)))
    fr.append((T0 + 90_002, eth(ipv4(A, B, 17, udp(40000, 50000, b"\x80\x08\x00")))))
    p, _ = run(fr)
    assert sum(p.stats.errors.values()) >= 2


# -- capture files ------------------------------------------------------------------------------
def _read(path, **kw):
    with open_capture(str(path)) as f:
        return [(ts, lt, bytes(fr)) for ts, lt, fr in read_capture(f, **kw)]


def test_pcap_pcapng_gzip_and_nanoseconds(tmp_path):
    frames = [(T0 + i * 1234, eth(ipv4(A, B, 17, udp(1, 2, bytes([i % 256]) * (i + 1))))) for i in range(300)]
    write_pcap(str(tmp_path / "a.pcap"), frames)
    write_pcap(str(tmp_path / "n.pcap"), frames, nanos=True)
    write_pcapng(str(tmp_path / "a.pcapng"), frames)
    (tmp_path / "a.pcap.gz").write_bytes(gzip.compress((tmp_path / "a.pcap").read_bytes()))
    want = [(ts, 1, fr) for ts, fr in frames]
    for name in ("a.pcap", "n.pcap", "a.pcapng", "a.pcap.gz"):
        assert _read(tmp_path / name) == want, name


def test_stdin_stream(tmp_path, monkeypatch):
    frames = [(T0 + i, eth(ipv4(A, B, 17, udp(1, 2, b"x" * 100)))) for i in range(5000)]
    write_pcap(str(tmp_path / "a.pcap"), frames)
    raw = (tmp_path / "a.pcap").read_bytes()

    class Pipe(io.RawIOBase):  # a stream that hands out small, uneven reads like a pipe
        def __init__(self, data):
            self.data, self.pos = data, 0

        def readable(self):
            return True

        def readinto(self, b):
            n = min(len(b), 777, len(self.data) - self.pos)
            b[:n] = self.data[self.pos:self.pos + n]
            self.pos += n
            return n

    for data in (raw, gzip.compress(raw)):
        f = open_capture("-", stdin=io.BufferedReader(Pipe(data)))
        got = [(ts, bytes(fr)) for ts, _lt, fr in read_capture(f)]
        assert got == frames


def test_truncated_file_ends_quietly_and_garbage_is_an_error(tmp_path):
    frames = [(T0 + i, eth(ipv4(A, B, 17, udp(1, 2, b"x" * 100)))) for i in range(10)]
    write_pcap(str(tmp_path / "a.pcap"), frames)
    data = (tmp_path / "a.pcap").read_bytes()
    (tmp_path / "t.pcap").write_bytes(data[:-50])
    assert len(_read(tmp_path / "t.pcap")) == 9
    (tmp_path / "g.pcap").write_bytes(b"not a capture at all")
    with pytest.raises(PcapError):
        _read(tmp_path / "g.pcap")


def _gen_module():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("edge_gen", Path(__file__).resolve().parents[3] / "bench" / "edge_gen.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _records(sink):
    out = {}
    for part, key, rec in sink.rtp:
        out.setdefault(part, []).append((key, rec))
    return out


@pytest.mark.parametrize("max_batch,chunk", [(10000, 1 << 20), (37, 1 << 20), (37, 3000), (5, 70000), (10000, 9000)])
def test_block_path_equals_per_packet_path(tmp_path, max_batch, chunk, monkeypatch):
    """Same records whatever the block boundaries (read size) and batch limit."""
    import edge_capture.pcapfile as pf
    from edge_capture.pcapfile import read_pcap_blocks

    path = tmp_path / "calls.pcap"
    with open(path, "wb") as f:
        _gen_module().generate(f, calls=40, seconds=3.5)
    # add crafted traffic that must leave the fast path: RTCP, a CSRC packet, a new call mid-block
    frames = []
    with open_capture(str(path)) as f:
        frames = [(ts, bytes(fr)) for ts, _lt, fr in read_capture(f)]
    t_mid = frames[len(frames) // 2][0]
    frames += call_frames(n_rtp=30)
    frames += [(t_mid + 5, eth(ipv4(A, B, 17, udp(5060, 5060, sip_invite("mid", "10.1.0.3", 20006)))))]
    frames.sort(key=lambda x: x[0])
    write_pcap(str(path), frames)
    cfg = dict(site="lab", edge_id="e1", max_batch_packets=max_batch)
    s1, s2 = DryRunSink(4, keep=True), DryRunSink(4, keep=True)
    p1, p2 = EdgePipeline(EdgeConfig(**cfg), s1), EdgePipeline(EdgeConfig(**cfg), s2)
    with open_capture(str(path)) as f:
        p1.consume(read_capture(f))
    monkeypatch.setattr(pf, "CHUNK", chunk)
    with open_capture(str(path)) as f:
        p2.consume_blocks(read_pcap_blocks(f))
    p1.finish()
    p2.finish()
    assert p1.summary() == p2.summary()
    assert p1.stats.rtp_packets > 10000
    assert [r for _, r in s1.sip] == [r for _, r in s2.sip]
    assert _records(s1) == _records(s2)


def test_pcapng_blocks_equal_frames(tmp_path):
    """read_pcap_blocks on pcapng (and a tiny read size, so blocks end mid-file) gives every frame."""
    import edge_capture.pcapfile as pf
    from edge_capture.pcapfile import read_pcap_blocks

    frames = [(T0 + i * 777, eth(ipv4(A, B, 17, udp(1, 2, bytes([i % 256]) * (i % 300 + 1))))) for i in range(2000)]
    write_pcapng(str(tmp_path / "a.pcapng"), frames)
    for chunk in (1 << 20, 5000):
        pf.CHUNK = chunk
        try:
            got = []
            with open_capture(str(tmp_path / "a.pcapng")) as f:
                for lt, buf, offs, lens, tss in read_pcap_blocks(f):
                    got += [(t, lt, buf[o:o + n]) for o, n, t in zip(offs, lens.tolist(), tss.tolist(), strict=True)]
        finally:
            pf.CHUNK = 1 << 20
        assert got == [(ts, 1, fr) for ts, fr in frames]
