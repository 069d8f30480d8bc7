"""The Faust application: thin agents around :mod:`streams.core`.

Agents (all records are Avro via :mod:`schemas.codec`; keys are raw UTF-8 bytes):

* ``signalling`` on ``<p>.sip`` (key ``site/Call-ID``): :class:`~streams.core.dialog.DialogTracker`;
  publishes ``MediaBinding`` to ``<p>.bindings`` keyed ``site/ip/port`` (Faust's producer partitions by
  murmur2 like the edge, so a binding lands on the partition of its RTP) and ``CallEvent`` to
  ``<p>.call-events``. Per-call dialog state lives in the changelogged table ``dialogs``.
* ``media`` on ``<p>.rtp`` + ``<p>.bindings`` + ``<p>.rtp-by-source`` (co-partitioned, one agent so a
  binding and the RTP that needs it are handled in order by the same worker):
  :class:`~streams.core.media.MediaJoiner`; bindings are mirrored into the changelogged table ``bindings``
  (written under the event's partition, which is the RTP's partition), audio goes to the STT pool through
  :class:`~streams.speech.SpeechRouter`. NAT fallback (``worker.nat_fallback``): RTP that no binding claims
  by destination within ``worker.pending_s`` is re-keyed by its source tuple and sent to
  ``<p>.rtp-by-source`` (:func:`by_source_batches`), where the worker owning that partition joins it by
  source (``on_rtp_batch(rec, by_source=True)``; a miss there is counted unmatched, never re-sent).
  RTP records are acknowledged (their offsets committed) only once the audio they gave STT is covered
  by a final result (:class:`~streams.core.acks.AckTracker`): a killed worker's successor reads the
  audio of unfinished utterances again, and the ``stt-checkpoints`` table skips what was finalised.
* ``assembler`` on ``<p>.transcripts`` + ``<p>.call-events`` (both keyed ``site/Call-ID``):
  :class:`~streams.core.assembler.CallAssembler`; writes ``CallTranscript`` to ``<p>.calls``.

An exception while handling one record is caught, counted and the record is sent to ``<p>.dlq``: an
exception escaping a Faust agent would acknowledge the record and lose it silently.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from faust.types import TP, EventT

from schemas.codec import AvroCodec, DecodeError
from spanscribe.config import topic as topic_name
from spanscribe.metrics import BAD_RECORDS, REGISTRY, counter, gauge, histogram
from spanscribe.partitioning import partition_for
from streams.core.acks import AckTracker
from streams.core.assembler import CallAssembler
from streams.core.dialog import BindingOut, CallEventOut, DialogConfig, DialogTracker, SpeakerMap
from streams.core.media import AudioChunk, MediaJoiner, Unmatched
from streams.faust_setup import faust_credentials, keep_fetched_on_resume, limit_fetch_wait
from streams.speech import SpeechRouter
from streams.tablestore import put as store_put
from streams.tablestore import resolve as store_choice

log = logging.getLogger(__name__)

RECORDS = counter("spanscribe_worker_records_total", "Records handled by the worker.", ("agent",))
FAILED = counter("spanscribe_worker_failed_records_total", "Records whose handling raised (sent to the DLQ).",
                 ("agent",))
CALLS_ACTIVE = gauge("spanscribe_calls_active", "Calls tracked by this worker's signalling agent.")
CALLS_DONE = counter("spanscribe_calls_finished_total", "CallTranscript documents written.")
MEDIA = counter("spanscribe_media_packets_total", "RTP packets seen by the media join, by outcome.", ("outcome",))
UNMATCHED = counter("spanscribe_rtp_unmatched_total", "RTP packets that never matched a media binding.")
NAT_FALLBACK = counter("spanscribe_rtp_nat_fallback_packets_total",
                       "RTP packets no binding claimed by destination within worker.pending_s, re-keyed by their "
                       "source tuple to <prefix>.rtp-by-source (NAT fallback).")
BY_SOURCE = counter("spanscribe_rtp_by_source_packets_total",
                    "RTP packets read from <prefix>.rtp-by-source and looked up by their source tuple (a miss "
                    "there is counted in spanscribe_rtp_unmatched_total).")
BY_SOURCE_RECORDS = counter("spanscribe_rtp_by_source_records_total", "RtpBatch records sent to <prefix>.rtp-by-source.")
STREAMS_ACTIVE = gauge("spanscribe_streams_active", "Speaker streams held by this worker's media join.")
PENDING = gauge("spanscribe_rtp_pending_packets", "RTP packets waiting for their binding.")
SIP_WAITS = counter("spanscribe_rtp_signalling_waits_total",
                    "RTP batches held until signalling had caught up with their capture time, by outcome.",
                    ("outcome",))
CAPTURE_TO_STT = histogram(
    "spanscribe_capture_to_stt_seconds",
    "Wall time when an RTP batch's audio was handed to the STT sessions minus the batch's capture-clock "
    "flush time (meaningful live, with edge and centre clocks in sync; add up to one flush interval for "
    "the oldest packet of the batch).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0))
BINDINGS_ACTIVE = gauge("spanscribe_bindings_active", "Media bindings held by this worker's media join.")
CONSUMER_LAG = gauge("spanscribe_consumer_lag_records",
                     "Records not yet handled on this worker's partitions (high watermark minus the next offset "
                     "to handle), by topic; a partition counts once this worker has handled a record of it.",
                     ("topic",))
LAG_S = gauge("spanscribe_capture_to_process_seconds",
              "Wall time minus capture time of the last RTP batch handled (real-time lag).")
HELD = gauge("spanscribe_rtp_held_records",
             "RTP records handled but not acknowledged yet: their audio has no final STT result.")
HELD_AGE = gauge("spanscribe_rtp_held_oldest_seconds",
                 "Capture time between the oldest unacknowledged RTP record and its partition's newest one.")
FORCED_ACKS = counter("spanscribe_rtp_forced_acks_total",
                      "RTP records acknowledged before their audio had a final result (worker.ack_hold_s or "
                      "worker.ack_hold_records reached: a silent speaker, a stalled STT server), by bound.",
                      ("bound",))


BY_SOURCE_EDGE_ID = "spanscribe-worker"  # edge_id of a by-source record not made while handling an RtpBatch


def by_source_batches(unmatched: Iterable[Unmatched], partitions: int, origin: Mapping[str, Any] | None = None,
                      flush_us: int = 0) -> list[tuple[int, bytes, dict[str, Any]]]:
    """Bundle :class:`Unmatched` outputs like the edge bundles RTP: ONE ``RtpBatch`` per target partition
    (murmur2 of the source tuple, so the by-source lookup is local to the worker owning it), in partition
    order -> ``(partition, key, RtpBatch dict)``. The key is the first entry's source tuple (a key on that
    partition); ``site``/``edge_id``/``edge_start_us``/``batch_seq``/``flush_ts_us`` are the handled
    record's (``origin``), or, for RTP expired by the timer, the entries' site, :data:`BY_SOURCE_EDGE_ID`
    and ``flush_us``."""
    groups: dict[int, list[Unmatched]] = {}
    for u in unmatched:
        groups.setdefault(partition_for(u.source_key.encode(), partitions), []).append(u)
    out: list[tuple[int, bytes, dict[str, Any]]] = []
    for part in sorted(groups):
        us = groups[part]
        if origin is not None:
            meta = {k: origin[k] for k in ("site", "edge_id", "edge_start_us", "batch_seq", "flush_ts_us")}
        else:
            meta = {"site": us[0].source_key.split("/", 1)[0], "edge_id": BY_SOURCE_EDGE_ID, "edge_start_us": 0,
                    "batch_seq": 0, "flush_ts_us": int(flush_us)}
        out.append((part, us[0].source_key.encode(), {**meta, "streams": [u.entry for u in us]}))
    return out


def _store_url(choice: str) -> str:
    return store_choice(choice)[0]


def build_app(settings: Mapping[str, Any], app_id: str = "spanscribe", data_dir: str | None = None,
              web_port: int = 6066) -> faust.App:
    """Create the Faust app with its topics, tables, agents, timers and web pages."""
    n = int(settings["partitions"])
    worker = settings.get("worker") or {}
    limit_fetch_wait(int(worker.get("fetch_max_wait_ms", 100)))
    app = faust.App(
        app_id,
        broker="kafka://" + ",".join(h.strip() for h in settings["bootstrap_servers"].split(",")),
        broker_credentials=faust_credentials(settings.get("kafka") or {}),
        store=_store_url(str(worker.get("store") or "auto")),
        datadir=data_dir or worker.get("data_dir") or f"/tmp/spanscribe-{app_id}",
        topic_partitions=n,
        topic_allow_declare=True,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        web_port=web_port,
        web_host="0.0.0.0",
        web_enabled=True,
        autodiscover=False,
        producer_acks=-1,
        # Faust's default (no linger) sent each output record (bindings, events, changelogs) in its own
        # produce request: 6% of the worker's CPU at a backlog (py-spy)
        producer_linger=float(worker.get("producer_linger_ms", 5)) / 1000.0,
        stream_wait_empty=False,
        # a replacement for a killed worker waits this long for the dead member to leave the group
        broker_session_timeout=float(worker.get("session_timeout_s", 60.0)),
        broker_heartbeat_interval=min(3.0, float(worker.get("session_timeout_s", 60.0)) / 4),
    )
    keep_fetched_on_resume(app)

    def t(name: str) -> Any:
        return app.topic(topic_name(settings, name), key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=n if name != "dlq" else 1)

    sip_t, bindings_t, transcripts_t, calls_t, events_t, dlq_t = (
        t("sip"), t("bindings"), t("transcripts"), t("calls"), t("call-events"), t("dlq"))
    by_source_t = t("rtp-by-source")
    media_in = app.topic(topic_name(settings, "rtp"), topic_name(settings, "bindings"),
                         topic_name(settings, "rtp-by-source"), key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw", partitions=n)
    assembler_in = app.topic(topic_name(settings, "transcripts"), topic_name(settings, "call-events"),
                             key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                             partitions=n)
    json_schema = faust.Schema(key_type=str, value_type=None, key_serializer="json", value_serializer="json")
    dialogs_table = app.Table("dialogs", default=None, partitions=n, schema=json_schema)
    bindings_table = app.Table("bindings", default=None, partitions=n, schema=json_schema)
    # per call: the assembler's state (segments so far, lifecycle), so a restarted worker's CallTranscript
    # still holds what was said before the restart
    assembly_table = app.Table("assembly", default=None, partitions=n, schema=json_schema)
    # per call speaker ("site/Call-ID|speaker"): call time (s) of the end of the last final STT result,
    # filed under the partition of the speaker's RTP stream; a restarted worker skips audio before it
    stt_table = app.Table("stt-checkpoints", default=None, partitions=n, schema=json_schema)

    codecs = {name: AvroCodec(name, registry=None) for name in
              ("SipMessage", "RtpBatch", "MediaBinding", "TranscriptSegment", "CallEvent", "CallTranscript")}
    by_topic = {topic_name(settings, "sip"): codecs["SipMessage"], topic_name(settings, "rtp"): codecs["RtpBatch"],
                topic_name(settings, "rtp-by-source"): codecs["RtpBatch"],
                topic_name(settings, "bindings"): codecs["MediaBinding"],
                topic_name(settings, "transcripts"): codecs["TranscriptSegment"],
                topic_name(settings, "call-events"): codecs["CallEvent"]}
    speakers = settings.get("speakers") or {}
    tracker = DialogTracker(DialogConfig(speaker_map=SpeakerMap.from_config(
        speakers.get("agent_networks") or [], speakers.get("agent_extensions") or [])))
    # RTP may be read well before its binding when a backlog is consumed (both topics are read at once,
    # the rtp topic holds ~1000x more bytes): hold it by capture time AND a memory bound.
    # One MediaJoiner per rtp partition: a joiner's capture clock ("now": closes + grace, idle ends,
    # pending expiry) must be its own partition's. Partitions are consumed independently, so one shared
    # clock let a partition that ran ahead end the streams of another before their last RTP was read.
    stt_rate = int((settings.get("stt") or {}).get("sample_rate", 16000))

    def new_joiner() -> MediaJoiner:
        return MediaJoiner(stt_rate=stt_rate,  # the rate the STT sessions announce (stt.sample_rate)
                           max_pending_s=float(worker.get("pending_s", 120.0)),
                           max_pending_bytes=int(float(worker.get("pending_mb", 64)) * (1 << 20)) // n,
                           idle_s=float(worker.get("idle_s", 30.0)),
                           nat_fallback=bool(worker.get("nat_fallback", True)))

    joiners: dict[int, MediaJoiner] = {}

    def joiner_at(partition: int) -> MediaJoiner:
        j = joiners.get(partition)
        if j is None:
            j = joiners[partition] = new_joiner()
        return j

    def joiner_for(stream_key: str) -> MediaJoiner:
        return joiner_at(partition_for(stream_key.encode(), n))

    def apply_binding(b: dict[str, Any]) -> list[Any]:
        """Apply a MediaBinding to its partition's joiner, idempotently: the signalling agent applies
        its bindings here at once and the topic brings the same records again later, so an exact
        repeat, or the open copy of a binding already closed, changes nothing (never re-opens)."""
        joiner = joiner_for(str(b["stream_key"]))
        outs = seed(joiner, str(b["stream_key"]))
        for cur in joiner.index.bindings(str(b["stream_key"])):
            if (cur["call_id"], cur["version"], cur["speaker"]) == (b["call_id"], b["version"], b["speaker"]):
                if cur == b or (cur.get("valid_until_us") is not None and b.get("valid_until_us") is None):
                    return outs
        return outs + joiner.on_binding(b)

    def seed(joiner: MediaJoiner, key: str) -> list[Any]:
        """A restarted worker: load a stream key's bindings from the table before its first use, so
        that a close read after the restart ends the stream opened before it (else it ends only idle)."""
        if joiner.index.bindings(key):
            return []
        outs: list[Any] = []
        for saved in bindings_table.get(key) or []:
            outs += joiner.on_binding(saved)
        return outs
    assembler = CallAssembler()
    stt = settings["stt"]
    state: dict[str, Any] = {"data_us": 0, "data_wall": time.monotonic(), "ready": False,
                             "media_idle": time.monotonic(), "media_busy": False, "gave_up_wm": float("-inf")}
    media_us: dict[int, int] = {}  # rtp partition -> newest flush time handled

    def publish_segment(key: bytes, seg: dict[str, Any]) -> None:
        transcripts_t.send_soon(key=key, value=codecs["TranscriptSegment"].encode(seg))

    def publish_event(key: bytes, ev: dict[str, Any]) -> None:
        events_t.send_soon(key=key, value=codecs["CallEvent"].encode(ev))

    def speaker_still_open(call_key: str, speaker: str) -> bool:
        """Another stream of this call speaker is live here (a re-INVITE moved it): keep its STT session."""
        site, _, call_id = call_key.partition("/")
        for joiner in joiners.values():
            if any(st.call_key == call_key and st.speaker == speaker for st in joiner.streams.values()):
                return True
            if any(b["call_id"] == call_id and b["speaker"] == speaker and b["site"] == site
                   and b.get("valid_until_us") is None for lst in joiner.index.store.values() for b in lst):
                return True
        return False

    def table_put(table: Any, partition: int, key: str, value: Any) -> None:
        """Write (or delete, value None) a table entry under an explicit partition: for writes made
        outside the agent that consumed the partition's event (STT results arrive on their own task)."""
        if value is None:
            if key not in table.data:
                return
            del table.data[key]
            table.send_changelog(partition, key, None, value_serializer="raw")
        else:
            store_put(table, partition, key, value)  # RocksDB: into that partition's database
            table.send_changelog(partition, key, value)

    # RTP records are acknowledged once the audio they gave STT is covered (see streams.core.acks);
    # a speaker's coverage is its STT checkpoint
    hold_s = float(worker.get("ack_hold_s", 30.0))
    acks = AckTracker(max_hold_us=int(hold_s * 1e6), max_records=int(worker.get("ack_hold_records", 4096)),
                      max_hold_wall_s=float(worker.get("ack_hold_wall_s", 10.0)))
    # a "done" checkpoint (session closed after its last final) outlives any record that could still be
    # read again: every record older than ack_hold_s is acknowledged
    done_ttl_us = int(max(3 * hold_s, 120.0) * 1e6)
    forced_seen: dict[str, int] = {}

    def ack_input(topic: str, partition: int) -> Any:
        """The ack tracker's name for an input: the rtp partition number, or the by-source one."""
        return partition if topic == rtp_topic else (by_source_topic, partition)

    def release(partitions: Any = None) -> None:
        for part in (list(partitions) if partitions is not None else acks.partitions()):
            clock = media_now_us(part if isinstance(part, int) else part[1])
            for ev in acks.release(part, clock, time.monotonic()):
                ev.ack()
        for bound, count in acks.forced.items():
            if count > forced_seen.get(bound, 0):
                FORCED_ACKS.labels(bound=bound).inc(count - forced_seen.get(bound, 0))
                forced_seen[bound] = count
        HELD.set(acks.held())
        HELD_AGE.set(acks.oldest_age_us() / 1e6)

    def claims(outs: list[Any]) -> list[tuple[Any, float]]:
        """(speaker, end of its audio in these outputs): one claim per speaker, the latest end."""
        ends: dict[Any, float] = {}
        for o in outs:
            if type(o) is AudioChunk:
                key, end = (o.call_key, o.speaker), o.start_s + o.pcm.shape[0] / o.sample_rate
                if end > ends.get(key, -1.0):
                    ends[key] = end
        return list(ends.items())

    def save_checkpoint(call_key: str, speaker: str, stream_key: str, end_s: float | None) -> None:
        table_put(stt_table, partition_for(stream_key.encode(), n), f"{call_key}|{speaker}", end_s)
        if end_s is not None:
            acks.cover((call_key, speaker), end_s)
            release()

    def mark_done(call_key: str, speaker: str, stream_key: str, end_s: float) -> None:
        part = partition_for(stream_key.encode(), n)
        table_put(stt_table, part, f"{call_key}|{speaker}",
                  {"end_s": end_s, "done": True, "p": part, "until_us": media_now_us(part) + done_ttl_us})
        acks.cover((call_key, speaker), end_s)
        release()

    def checkpoint(call_key: str, speaker: str) -> tuple[float, bool] | None:
        v = stt_table.get(f"{call_key}|{speaker}")
        if v is None:
            return None
        return (float(v["end_s"]), True) if isinstance(v, dict) else (float(v), False)

    def load_checkpoint(call_key: str, speaker: str) -> float | None:
        cp = checkpoint(call_key, speaker)
        if cp is None:
            return None
        acks.cover((call_key, speaker), cp[0])
        return cp[0]

    def was_done(call_key: str, speaker: str) -> bool:
        cp = checkpoint(call_key, speaker)
        return cp is not None and cp[1]

    def expire_done() -> None:
        """Forget "done" checkpoints whose lifetime (capture time of their partition) is over."""
        for key, v in list(stt_table.data.items()):
            if isinstance(v, dict) and v.get("done") and int(v["p"]) in joiners \
                    and media_now_us(int(v["p"])) > int(v["until_us"]):
                table_put(stt_table, int(v["p"]), key, None)
                call_key, _, speaker = str(key).rpartition("|")
                acks.forget((call_key, speaker))

    router = SpeechRouter(stt["urls"], int(stt["max_sessions"]), publish_segment, publish_event,
                          sample_rate=stt_rate, still_open=speaker_still_open,
                          save_checkpoint=save_checkpoint, load_checkpoint=load_checkpoint,
                          protocol=str(stt.get("protocol", "vosk")), mark_done=mark_done, was_done=was_done)
    router_lock = asyncio.Lock()  # the media agent, the signalling agent and the timer feed one router

    async def route(outs: list[Any], origin: Mapping[str, Any] | None = None, now_us: int = 0,
                    behind_s: float = 0.0) -> None:
        """Audio, stream ends and notes to the STT router (``behind_s``: how far their capture time is
        behind the wall clock, see ``SttPool.send``); :class:`Unmatched` RTP (NAT fallback) re-keyed
        by source to ``<p>.rtp-by-source``, one record per target partition for this handled record
        (``origin``) or timer run (``now_us``)."""
        if not outs:
            return
        if any(isinstance(o, Unmatched) for o in outs):
            for part, key, rec in by_source_batches([o for o in outs if isinstance(o, Unmatched)], n, origin, now_us):
                await by_source_t.send(key=key, value=codecs["RtpBatch"].encode(rec), partition=part)
                BY_SOURCE_RECORDS.inc()
            outs = [o for o in outs if not isinstance(o, Unmatched)]
        if outs:
            async with router_lock:
                await router.handle(outs, behind_s)

    rtp_topic = topic_name(settings, "rtp")
    by_source_topic = topic_name(settings, "rtp-by-source")
    sip_topic = topic_name(settings, "sip")
    handled: dict[TP, int] = {}  # input partition -> offset of the last record handled here (lag metric)
    sip_pos: dict[TP, tuple[int, int]] = {}  # sip partition -> (offset, capture time) last handled here
    sip_wait_s = float(worker.get("sip_wait_s", 5.0))

    def sip_watermark_us() -> float:
        """Capture time up to which this worker's signalling has handled every SIP message it owns
        (infinite when it has read all there is): bindings up to then are in the local joiner."""
        wm = float("inf")
        for tp in app.consumer.assignment():
            if tp.topic != sip_topic:
                continue
            off, ts = sip_pos.get(tp, (-1, -1))
            try:
                hw = app.consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - not fetched yet
                hw = None
            if hw is None or off + 1 >= int(hw):
                continue
            wm = min(wm, float(ts))
        return wm

    async def wait_for_signalling(t_us: int) -> None:
        """Hold an RTP batch until signalling has caught up with its capture time (bounded): an open
        binding must not take RTP that a BYE or a later call's INVITE, not yet read, would route elsewhere."""
        wm = sip_watermark_us()
        if wm >= t_us or wm <= state["gave_up_wm"]:
            return  # caught up, or signalling stalled at this point already: do not wait per batch
        deadline = time.monotonic() + sip_wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            if sip_watermark_us() >= t_us:
                SIP_WAITS.labels(outcome="caught_up").inc()
                return
        state["gave_up_wm"] = sip_watermark_us()
        SIP_WAITS.labels(outcome="timeout").inc()
        log.warning("signalling is not advancing (at %.0f µs capture time): RTP goes on without waiting",
                    state["gave_up_wm"])

    def owns_rtp(stream_key: bytes) -> bool:
        return TP(rtp_topic, partition_for(stream_key, n)) in app.consumer.assignment()

    def decode(event: EventT) -> dict[str, Any] | None:
        msg = event.message
        codec = by_topic[msg.topic]
        try:
            return codec.decode(event.value, topic=msg.topic, partition=msg.partition, offset=msg.offset)
        except DecodeError as exc:
            BAD_RECORDS.labels(topic=msg.topic, reason=exc.reason).inc()
            log.warning("%s", exc)
            dlq_t.send_soon(key=event.key, value=event.value, headers=dlq_headers(event, [
                ("spanscribe.error", str(exc)[:500].encode()), ("spanscribe.reason", exc.reason.encode())]))
            return None

    def dlq_headers(event: EventT[Any], ours: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """The record's own headers, then ours (error, reason, source) for the DLQ copy."""
        msg = event.message
        raw = msg.headers.items() if isinstance(msg.headers, Mapping) else (msg.headers or [])
        own = [(str(k), v if isinstance(v, bytes) else str(v or "").encode()) for k, v in raw]
        return [*own, *ours, ("spanscribe.source", f"{msg.topic}[{msg.partition}]@{msg.offset}".encode())]

    def dead_letter(agent: str, event: EventT, exc: BaseException) -> None:
        msg = event.message
        FAILED.labels(agent=agent).inc()
        log.exception("%s: record %s[%s]@%s failed (%s); sent to the DLQ", agent, msg.topic, msg.partition,
                      msg.offset, type(exc).__name__)
        dlq_t.send_soon(key=event.key, value=event.value, headers=dlq_headers(event, [
            ("spanscribe.error", f"{type(exc).__name__}: {exc}"[:500].encode()),
            ("spanscribe.reason", b"exception")]))

    def data_now_us() -> int:
        """Capture-clock 'now': the newest capture time seen, advanced by wall time since (idle input)."""
        return int(state["data_us"] + (time.monotonic() - state["data_wall"]) * 1e6)

    def media_now_us(partition: int) -> int:
        """One rtp partition's clock: its newest RTP capture time handled, advanced by wall time only
        while the media agent is idle. Streams end (binding closed + grace, idle) by this clock, never by
        the signalling side's or another partition's, which may run ahead of RTP still to be read."""
        base = media_us.get(partition, 0)
        if state["media_busy"] or not base:
            return base
        return int(base + (time.monotonic() - state["media_idle"]) * 1e6)

    def seen(ts_us: int) -> None:
        if ts_us > state["data_us"]:
            state["data_us"] = ts_us
            state["data_wall"] = time.monotonic()

    async def send_dialog_outputs(outs: list[Any]) -> None:
        for o in outs:
            if isinstance(o, BindingOut):
                await bindings_t.send(key=o.key, value=codecs["MediaBinding"].encode(o.value))
                if owns_rtp(o.key):  # apply at once here too (the topic copy re-applies idempotently)
                    await route(apply_binding(dict(o.value)))
            elif isinstance(o, CallEventOut):
                await events_t.send(key=o.key, value=codecs["CallEvent"].encode(o.value))

    @app.agent(sip_t, name="signalling")
    async def signalling(stream: Any) -> None:
        async for event in stream.events():
            RECORDS.labels(agent="signalling").inc()
            handled[TP(event.message.topic, event.message.partition)] = event.message.offset
            msg = event.message
            tp = TP(msg.topic, msg.partition)
            ts_us = sip_pos.get(tp, (-1, -1))[1]
            try:
                rec = decode(event)
                if rec is None:
                    continue
                ts_us = int(rec["capture_ts_us"])
                seen(ts_us)
                call_key = f"{rec['site']}/{rec['call_id']}"
                if call_key not in tracker.calls():
                    saved = dialogs_table.get(call_key)
                    if saved:
                        tracker.restore(call_key, saved)
                outs = tracker.on_sip(rec)
                snap = tracker.snapshot(call_key)
                dialogs_table[call_key] = snap
                CALLS_ACTIVE.set(len(tracker.calls()))
                await send_dialog_outputs(outs)
            except Exception as exc:
                dead_letter("signalling", event, exc)
            finally:  # handled (bindings applied here), even a bad record: the watermark moves on
                sip_pos[tp] = (msg.offset, ts_us)

    @app.agent(media_in, name="media")
    async def media(stream: Any) -> None:
        # manual acks: a bindings record at once (it lives on in the table), an RTP record through the
        # ack tracker, in offset order, once its audio is covered by final results
        async for event in stream.noack().events():
            RECORDS.labels(agent="media").inc()
            handled[TP(event.message.topic, event.message.partition)] = event.message.offset
            state["media_busy"] = True
            outs: list[Any] = []
            try:
                rec = decode(event)
                if rec is None:
                    continue
                if event.message.topic == topic_name(settings, "bindings"):
                    outs = apply_binding(rec)
                    key = rec["stream_key"]
                    saved = list(bindings_table.get(key) or [])
                    saved = [b for b in saved if not (b["call_id"] == rec["call_id"] and b["version"] == rec["version"]
                                                      and b["speaker"] == rec["speaker"])] + [rec]
                    bindings_table[key] = saved[-16:]
                    # pending RTP joined now: its records were acknowledged already unless still held
                    acks.claim_latest(event.message.partition, claims(outs))
                    await route(outs)
                else:
                    # rtp: keyed by destination. rtp-by-source: RTP no destination claimed, re-keyed by
                    # source on another worker (or this one) pending_s ago; its flush time is the original
                    # record's, behind this partition's clock: it moves neither clock (capture time of
                    # its packets still advances the joiner's, monotonically).
                    by_source = event.message.topic == by_source_topic
                    part = event.message.partition  # == partition_for(stream key) of every entry
                    joiner = joiner_at(part)
                    if not by_source:
                        seen(int(rec["flush_ts_us"]))
                        LAG_S.set(max(time.time() - rec["flush_ts_us"] / 1e6, 0.0))
                    await wait_for_signalling(int(rec["flush_ts_us"]))
                    outs = []
                    for entry in rec["streams"]:  # a restarted worker: seed the joiner from the table
                        outs += seed(joiner, str(entry["stream_key"]))
                    if by_source:  # a miss is counted unmatched by the joiner: never re-sent (no loop)
                        outs += joiner.on_rtp_batch(dict(rec, flush_ts_us=0), by_source=True)
                    else:
                        outs += joiner.on_rtp_batch(rec)
                        media_us[part] = max(media_us.get(part, 0), int(rec["flush_ts_us"]))
                    await route(outs, origin=rec, now_us=joiner.now_us,
                                behind_s=time.time() - rec["flush_ts_us"] / 1e6)
                if event.message.topic == rtp_topic:
                    CAPTURE_TO_STT.observe(max(time.time() - rec["flush_ts_us"] / 1e6, 0.0))
            except Exception as exc:
                dead_letter("media", event, exc)
            finally:
                state["media_busy"] = False
                state["media_idle"] = time.monotonic()
                msg = event.message
                if msg.topic in (rtp_topic, by_source_topic):  # every RTP record, even a bad one, keeps
                    part = ack_input(msg.topic, msg.partition)  # the offset order of its topic partition
                    acks.hold(part, msg.offset, media_us.get(msg.partition, 0), event, claims(outs), time.monotonic())
                    release([part])
                else:
                    event.ack()

    @app.agent(assembler_in, name="assembler")
    async def assemble(stream: Any) -> None:
        async for event in stream.events():
            RECORDS.labels(agent="assembler").inc()
            handled[TP(event.message.topic, event.message.partition)] = event.message.offset
            try:
                rec = decode(event)
                if rec is None:
                    continue
                key = f"{rec['site']}/{rec['call_id']}"
                if key not in assembler.store:  # a restarted worker: pick the call up from the table
                    saved = assembly_table.get(key)
                    if saved:
                        assembler.restore(key, saved)
                if event.message.topic == topic_name(settings, "transcripts"):
                    docs = assembler.on_segment(rec)
                else:
                    docs = assembler.on_call_event(rec)
                snap = assembler.snapshot(key)
                if snap is not None:
                    assembly_table[key] = snap
                for doc in docs:
                    CALLS_DONE.inc()
                    await calls_t.send(key=f"{doc['site']}/{doc['call_id']}".encode(),
                                       value=codecs["CallTranscript"].encode(doc))
            except Exception as exc:
                dead_letter("assembler", event, exc)

    exported: dict[str, int] = {}

    def export_media_counters() -> None:
        totals: dict[str, int] = {}
        for j in joiners.values():
            for name, value in j.counters.items():
                totals[name] = totals.get(name, 0) + value
        for name, value in totals.items():
            delta = value - exported.get(name, 0)
            if delta > 0:
                if name == "unmatched_packets":
                    UNMATCHED.inc(delta)
                elif name == "fallback_packets":
                    NAT_FALLBACK.inc(delta)
                elif name == "by_source_packets":
                    BY_SOURCE.inc(delta)
                else:
                    MEDIA.labels(outcome=name).inc(delta)
            exported[name] = value
        STREAMS_ACTIVE.set(sum(len(j.streams) for j in joiners.values()))
        PENDING.set(sum(j.pending_packets for j in joiners.values()))
        BINDINGS_ACTIVE.set(sum(len(lst) for j in joiners.values() for lst in j.index.store.values()))
        lag: dict[str, int] = {}
        for tp in app.consumer.assignment():
            if tp not in handled or "-changelog" in tp.topic:
                continue
            try:
                hw = app.consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - not fetched yet
                continue
            if hw is not None:
                name = tp.topic.removeprefix(f"{settings['topic_prefix']}.")
                lag[name] = lag.get(name, 0) + max(int(hw) - handled[tp] - 1, 0)
        for name, value in lag.items():
            CONSUMER_LAG.labels(topic=name).set(value)

    @app.timer(interval=1.0)
    async def tick() -> None:
        now = data_now_us()
        try:
            export_media_counters()
            held = {k: v["state"] for k, v in tracker.store.items()}
            outs = tracker.expire(now)
            for key, st in held.items():  # timed out, or forgotten after linger_s: the table follows
                snap = tracker.snapshot(key)
                if snap is None or snap["state"] != st:
                    table_put(dialogs_table, partition_for(key.encode(), n), key, snap)
            await send_dialog_outputs(outs)
            for part, joiner in sorted(joiners.items()):
                mnow = media_now_us(part)
                if mnow:
                    ended = joiner.expire(mnow)
                    await route(ended, now_us=mnow)
                    acks.claim_latest(part, claims(ended))  # a jitter gap released, a stream flushed
                    joiner.index.expire(mnow)
            expire_done()
            release()
            before = set(assembler.store.keys())
            for doc in assembler.expire(now):
                CALLS_DONE.inc()
                await calls_t.send(key=f"{doc['site']}/{doc['call_id']}".encode(),
                                   value=codecs["CallTranscript"].encode(doc))
            for key in before - set(assembler.store.keys()):  # forgotten after linger_s: table too
                table_put(assembly_table, partition_for(key.encode(), n), key, None)
        except Exception:
            log.exception("periodic expiry failed")

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        for tp in args[0] if args else kwargs.get("revoked", ()):  # never acknowledged here: the new owner reads them again
            if tp.topic in (rtp_topic, by_source_topic):
                acks.revoke(ack_input(tp.topic, tp.partition))

    @app.task
    async def on_started() -> None:
        state["ready"] = True

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ok = bool(state["ready"]) and not app.rebalancing
        try:  # which partitions this worker holds (co-partitioned: the same numbers on every topic)
            parts = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == rtp_topic)
        except Exception:  # noqa: BLE001 - no consumer yet
            parts = []
        return web.json({"ready": ok, "partitions": parts}, status=200 if ok else 503)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        from prometheus_client import generate_latest

        return web.bytes(generate_latest(REGISTRY), content_type="text/plain; version=0.0.4")

    app.spanscribe = {"tracker": tracker, "joiners": joiners, "assembler": assembler, "router": router}  # type: ignore[attr-defined]
    return app
