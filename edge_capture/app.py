"""``spanscribe edge``: wire a source (file or interface), the pipeline and a sink (Kafka or dry run).

``run(args) -> int`` takes the argparse namespace of the ``edge`` subcommand (``args.settings`` is the
merged configuration dict). SIGTERM/SIGINT stop the source at the next chunk/block; open RTP batches
and the producer are flushed and the process exits 0.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from spanscribe import metrics

from .pipeline import EdgeConfig, EdgePipeline

log = logging.getLogger(__name__)


def parse_ports(text: str) -> frozenset[int]:
    """'5060,5061,6000-6010' -> a set of ports. Raises ValueError naming the bad item."""
    out: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        a, b = int(lo), int(hi or lo)
        if not (0 < a <= b <= 65535):
            raise ValueError(f"bad port or range {part!r}")
        out.update(range(a, b + 1))
    return frozenset(out)


def parse_range(text: str) -> tuple[int, int]:
    lo, _, hi = str(text).partition("-")
    a, b = int(lo), int(hi or lo)
    if not (0 < a <= b <= 65535):
        raise ValueError(f"bad port range {text!r}")
    return a, b


class _Metrics:
    """Copies the pipeline's plain counters into Prometheus (deltas), every few seconds."""

    def __init__(self) -> None:
        c, g = metrics.counter, metrics.gauge
        self.frames = c("spanscribe_edge_frames_total", "Frames read from the capture source")
        self.bytes = c("spanscribe_edge_bytes_total", "Bytes of frames read")
        self.kdrops = c("spanscribe_edge_kernel_drops_total", "Packets the kernel dropped (PACKET_STATISTICS tp_drops)")
        self.kfreeze = c("spanscribe_edge_kernel_freeze_total", "Ring freezes (PACKET_STATISTICS tp_freeze_q_cnt)")
        self.frag_pending = g("spanscribe_edge_fragments_pending", "IP datagrams waiting for fragments")
        self.frag_expired = c("spanscribe_edge_fragments_expired_total", "IP datagrams dropped incomplete")
        self.frag_done = c("spanscribe_edge_fragments_reassembled_total", "IP datagrams reassembled")
        self.sip = c("spanscribe_edge_sip_messages_total", "SIP messages seen, by method (requests) or status (responses)",
                     ("method", "status"))
        self.rtp = c("spanscribe_edge_rtp_packets_total", "RTP packets forwarded")
        self.rtcp = c("spanscribe_edge_rtcp_packets_total", "RTCP packets seen (counted, not forwarded)")
        self.streams = g("spanscribe_edge_rtp_streams", "RTP streams (5-tuple + SSRC) currently tracked")
        self.endpoints = g("spanscribe_edge_media_endpoints", "Media endpoints learned from SDP and still open")
        self.batches = c("spanscribe_edge_rtp_batches_total", "RtpBatch records produced")
        self.delivery = c("spanscribe_edge_delivery_total", "Kafka delivery reports", ("result",))
        self.backpressure = c("spanscribe_edge_backpressure_total", "Producer queue full: waited and retried")
        self.queue = g("spanscribe_edge_producer_queue", "Records waiting in the producer queue")
        self._last: dict[Any, int] = {}

    def _inc(self, key: Any, metric: Any, value: int) -> None:
        d = value - self._last.get(key, 0)
        if d > 0:
            metric.inc(d)
        self._last[key] = value

    def update(self, p: EdgePipeline, sink: Any, source: Any) -> None:
        st = p.stats
        self._inc("frames", self.frames, st.frames)
        self._inc("bytes", self.bytes, st.bytes)
        self._inc("rtp", self.rtp, st.rtp_packets)
        self._inc("rtcp", self.rtcp, st.rtcp_packets)
        self._inc("batches", self.batches, st.rtp_batches)
        self._inc("frag_expired", self.frag_expired, p.frags.expired)
        self._inc("frag_done", self.frag_done, p.frags.reassembled)
        self.frag_pending.set(p.frags.pending)
        self.streams.set(len(p.streams))
        self.endpoints.set(len(p.endpoints))
        for m, n in st.sip_methods.items():
            self._inc(("m", m), self.sip.labels(method=m if len(m) < 16 else "other", status=""), n)
        for s, n in st.sip_responses.items():
            self._inc(("s", s), self.sip.labels(method="", status=s), n)
        for (stage, reason), n in st.errors.items():
            self._inc(("e", stage, reason), metrics.BAD_INPUT.labels(stage=stage, reason=reason), n)
        if hasattr(sink, "delivered"):
            self._inc("ok", self.delivery.labels(result="ok"), sink.delivered)
            self._inc("fail", self.delivery.labels(result="failed"), sink.failed)
            self._inc("bp", self.backpressure, sink.backpressure)
        self.queue.set(sink.queue_len())
        if source is not None and hasattr(source, "read_stats"):
            _pk, drops, freezes = source.read_stats()
            self._inc("kd", self.kdrops, drops)
            self._inc("kf", self.kfreeze, freezes)


def _progress_bar(done: int, total: int, frames: int, rate: float) -> None:
    width = 30
    frac = min(1.0, done / total) if total else 0.0
    bar = "#" * int(frac * width)
    sys.stderr.write(f"\r[{bar:<{width}}] {frac * 100:5.1f}%  {frames:,} frames  {rate:,.0f} pkt/s ")
    sys.stderr.flush()


def build_config(args: argparse.Namespace, settings: dict[str, Any]) -> EdgeConfig:
    host = socket.gethostname()
    site = getattr(args, "site", None) or settings.get("site") or host
    src_name = args.interface if getattr(args, "interface", None) else os.path.basename(args.pcap or "-")
    edge_id = getattr(args, "edge_id", None) or f"{host}/{src_name}"
    return EdgeConfig(
        site=str(site), edge_id=str(edge_id),
        sip_ports=parse_ports(getattr(args, "sip_ports", None) or "5060"),
        rtp_mode=getattr(args, "rtp_mode", None) or "sdp",
        rtp_ports=parse_range(getattr(args, "rtp_ports", None) or "1024-65535"),
        rtp_grace_us=int(float(getattr(args, "rtp_grace_s", None) or 30.0) * 1e6),
        flush_us=int(getattr(args, "flush_ms", None) or 100) * 1000,
        max_batch_packets=int(getattr(args, "max_batch_packets", None) or 10000),
    )


class _StopStream(Exception):
    """Raised by the signal handler to break out of a blocked read on a stdin stream."""


def run(args: argparse.Namespace) -> int:
    """Run the edge capturer; returns the process exit code."""
    settings: dict[str, Any] = dict(getattr(args, "settings", None) or {})
    try:
        cfg = build_config(args, settings)
    except ValueError as exc:
        print(f"spanscribe edge: {exc}", file=sys.stderr)
        return 2
    stop = {"flag": False}

    stream_input = getattr(args, "pcap", None) == "-"

    def _stop(signum: int, _frame: Any) -> None:
        if stop["flag"]:  # second signal: give up on flushing
            raise KeyboardInterrupt
        stop["flag"] = True
        log.info("signal %d: stopping, flushing open batches", signum)
        if stream_input:
            # A pipe can block in read() for ever (PEP 475 retries it after this handler): interrupt it.
            # At worst the frame being processed is lost; batches and the producer are still flushed.
            raise _StopStream

    old_handlers = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _run(args, settings, cfg, stop)
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)


def _make_sink(args: argparse.Namespace, settings: dict[str, Any]) -> Any:
    if getattr(args, "dry_run", False):
        from .sinks import DryRunSink

        return DryRunSink(int(getattr(args, "partitions", None) or settings.get("partitions") or 4))
    from spanscribe.config import kafka_config

    from .producer import KafkaSink

    prefix = settings.get("topic_prefix") or "spanscribe"
    return KafkaSink(kafka_config({"bootstrap_servers": settings.get("bootstrap_servers", "127.0.0.1:9092"),
                                   "kafka": settings.get("kafka") or {}}),
                     f"{prefix}.sip", f"{prefix}.rtp", registry_url=settings.get("schema_registry_url"))


def _run(args: argparse.Namespace, settings: dict[str, Any], cfg: EdgeConfig, stop: dict[str, bool]) -> int:
    metrics.serve(int(getattr(args, "metrics_port", 0) or 0))
    mx = _Metrics()
    try:
        sink = _make_sink(args, settings)
    except Exception as exc:  # broker unreachable, bad librdkafka property
        print(f"spanscribe edge: cannot start the producer: {exc}", file=sys.stderr)
        return 1
    pipeline = EdgePipeline(cfg, sink)
    if getattr(args, "summary_json", None):
        # Opened now, while we may still be root: --user drops privileges before the summary is written.
        args._summary_file = open(args.summary_json, "w", encoding="utf-8")  # noqa: SIM115
    log_interval = float(getattr(args, "log_interval_s", None) or 10.0)
    source: Any = None
    blocks: Any = None
    f: Any = None
    total_bytes = 0
    read_bytes = [0]
    is_stop = lambda: stop["flag"]  # noqa: E731
    t_start = time.monotonic()
    hk: list[Any] = []
    speed = 0.0
    try:
        if getattr(args, "interface", None):
            from .live import LiveSource, compile_filter, drop_privileges

            bpf = compile_filter(args.bpf_filter, args.interface) if getattr(args, "bpf_filter", None) else None

            def on_idle() -> None:
                pipeline.tick(time.time_ns() // 1000)
                if hk:  # metrics, progress log and kernel counters also while no packet arrives
                    hk[0]()
                else:
                    sink.poll(0)

            source = LiveSource(args.interface, ring_mb=int(getattr(args, "ring_mb", None) or 64), bpf=bpf,
                                stop=is_stop, on_idle=on_idle)
            if getattr(args, "user", None):
                drop_privileges(args.user)
                log.info("dropped privileges to %s", args.user)
            blocks = source.blocks()
            items: Any = None
            log.info("capturing on %s (%s mode), site %s, edge %s", args.interface, source.mode, cfg.site, cfg.edge_id)
        else:
            from .pcapfile import open_capture, read_capture, read_pcap_blocks

            f = open_capture(args.pcap)
            if args.pcap != "-":
                total_bytes = os.path.getsize(args.pcap)

            def progress(n: int) -> None:
                read_bytes[0] = n

            speed = float(getattr(args, "speed", 0.0) or 0.0)
            blocks = None if speed else read_pcap_blocks(f, stop=is_stop, progress=progress)
            items = blocks if blocks is not None else read_capture(f, stop=is_stop, speed=speed, progress=progress)
            log.info("reading %s, site %s, edge %s", args.pcap, cfg.site, cfg.edge_id)
        tty = sys.stderr.isatty() and bool(getattr(args, "pcap", None)) and args.pcap != "-" and total_bytes > 0
        state = {"next_log": time.monotonic() + log_interval, "next_hk": time.monotonic() + 1.0,
                 "frames": 0, "t": time.monotonic()}

        def housekeeping() -> bool:
            sink.poll(0)
            now = time.monotonic()
            if now >= state["next_hk"]:
                state["next_hk"] = now + 1.0
                mx.update(pipeline, sink, source)
                if tty:
                    rate = (pipeline.stats.frames - state["frames"]) / max(1e-6, now - state["t"])
                    state["frames"], state["t"] = pipeline.stats.frames, now
                    _progress_bar(read_bytes[0], total_bytes, pipeline.stats.frames, rate)
                if now >= state["next_log"]:
                    state["next_log"] = now + log_interval
                    _log_progress(pipeline, sink, source, now - t_start)
            return stop["flag"]

        hk.append(housekeeping)
        if blocks is not None:  # live ring blocks, or classic pcap as fast as possible: the vectorised path
            pipeline.consume_blocks(blocks, housekeeping=housekeeping)
        else:
            # paced replays are slow by definition: housekeeping (metrics, log, stop) every few frames
            pipeline.consume(items, every=32 if speed else 8192, housekeeping=housekeeping)
    except _StopStream:
        pass
    except KeyboardInterrupt:
        log.warning("interrupted twice: not waiting for the producer")
        return 130
    except Exception as exc:
        from .live import LiveCaptureError
        from .pcapfile import PcapError

        if isinstance(exc, (PcapError, LiveCaptureError, OSError)):
            print(f"spanscribe edge: {exc}", file=sys.stderr)
            _finish(pipeline, sink, source, args, t_start, mx)
            return 1
        raise
    finally:
        if f is not None:
            f.close()
    rc = _finish(pipeline, sink, source, args, t_start, mx)
    if source is not None:
        source.close()
    return rc


def _log_progress(p: EdgePipeline, sink: Any, source: Any, elapsed: float) -> None:
    st = p.stats
    drops = f" kernel_drops={source.kernel_drops}" if source is not None and hasattr(source, "kernel_drops") else ""
    log.info("frames=%d (%.0f/s) sip=%d rtp=%d rtcp=%d streams=%d endpoints=%d batches=%d queue=%d errors=%d%s",
             st.frames, st.frames / max(elapsed, 1e-6), st.sip_messages, st.rtp_packets, st.rtcp_packets,
             len(p.streams), len(p.endpoints), st.rtp_batches, sink.queue_len(), sum(st.errors.values()), drops)


def _finish(pipeline: EdgePipeline, sink: Any, source: Any, args: argparse.Namespace, t_start: float,
            mx: _Metrics | None) -> int:
    pipeline.finish()
    left = sink.close(30.0)
    elapsed = time.monotonic() - t_start
    if mx is not None:
        mx.update(pipeline, sink, source)
    if sys.stderr.isatty() and getattr(args, "pcap", None):
        sys.stderr.write("\n")
    st = pipeline.stats
    summary = pipeline.summary()
    summary["elapsed_s"] = round(elapsed, 3)
    if hasattr(sink, "delivered"):
        summary["delivered"] = sink.delivered
        summary["delivery_failed"] = sink.failed
        summary["backpressure"] = sink.backpressure
    if source is not None and hasattr(source, "kernel_drops"):
        source.read_stats()
        summary["kernel_drops"] = source.kernel_drops
        summary["kernel_packets"] = source.kernel_packets
    log.info("done: %d frames in %.1f s (%.0f/s), %d SIP messages, %d calls, %d RTP packets in %d streams, "
             "%d RTCP, %d batches, %d decode errors%s",
             st.frames, elapsed, st.frames / max(elapsed, 1e-6), st.sip_messages, len(pipeline.calls),
             st.rtp_packets, len(summary["rtp_streams"]), st.rtcp_packets, st.rtp_batches, sum(st.errors.values()),
             f", {left} records NOT delivered" if left else "")
    out = getattr(args, "_summary_file", None)
    if out is not None:
        with out:
            json.dump(summary, out, indent=1, sort_keys=True)
        args._summary_file = None
    if left or getattr(sink, "failed", 0):
        return 1
    return 0
