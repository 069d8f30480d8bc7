"""``spanscribe topics create|list|describe``: the topics of the architecture, created idempotently.

| topic            | cleanup  | partitions          |
|------------------|----------|---------------------|
| PREFIX.sip       | delete   | N                   |
| PREFIX.rtp       | delete   | N                   |
| PREFIX.bindings  | compact  | N (== rtp: co-partitioned with it, the join depends on it) |
| PREFIX.rtp-by-source | delete | N (== rtp: NAT fallback, RTP re-keyed by its source tuple, co-partitioned) |
| PREFIX.transcripts | delete | N                   |
| PREFIX.calls     | compact  | N                   |
| PREFIX.call-events | delete | N (== sip: keyed by site/Call-ID like sip) |
| PREFIX.dlq       | delete   | 1                   |
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spanscribe.config import kafka_config, topic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(settings: Mapping[str, Any], retention_hours: float = 168.0) -> list[TopicSpec]:
    """The topics to create for ``settings`` (prefix, partitions)."""
    n = int(settings["partitions"])
    retention = str(int(retention_hours * 3600 * 1000))
    delete = {"cleanup.policy": "delete", "retention.ms": retention}
    compact = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
    return [
        TopicSpec(topic(settings, "sip"), n, dict(delete)),
        TopicSpec(topic(settings, "rtp"), n, dict(delete, **{"max.message.bytes": str(8 << 20)})),
        TopicSpec(topic(settings, "bindings"), n, dict(compact)),
        # NAT fallback: RTP no SDP destination claimed, re-keyed by its source tuple (the worker re-sends
        # it there, so a short retention suffices)
        TopicSpec(topic(settings, "rtp-by-source"), n,
                  dict(delete, **{"max.message.bytes": str(8 << 20),
                                  "retention.ms": str(min(int(retention), 24 * 3600 * 1000))})),
        TopicSpec(topic(settings, "transcripts"), n, dict(delete)),
        TopicSpec(topic(settings, "calls"), n, dict(compact)),
        TopicSpec(topic(settings, "call-events"), n, dict(delete)),
        TopicSpec(topic(settings, "dlq"), 1, dict(delete)),
    ]


def create_topics(settings: Mapping[str, Any], retention_hours: float = 168.0,
                  timeout_s: float = 30.0) -> dict[str, str]:
    """Create missing topics; returns {topic: 'created' | 'exists'}.

    Raises RuntimeError if a topic exists with a different partition count where co-partitioning needs
    equality (bindings and rtp-by-source vs rtp), or if creation fails.
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(kafka_config(settings))
    specs = topic_specs(settings, retention_hours)
    md = admin.list_topics(timeout=timeout_s)
    result: dict[str, str] = {}
    new = []
    for s in specs:
        if s.name in md.topics:
            result[s.name] = "exists"
        else:
            new.append(NewTopic(s.name, num_partitions=s.partitions,
                                replication_factor=int(settings["replication_factor"]), config=s.config))
    if new:
        futures = admin.create_topics(new, request_timeout=timeout_s)
        for name, fut in futures.items():
            try:
                fut.result()
                result[name] = "created"
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" in str(exc):
                    result[name] = "exists"
                else:
                    raise RuntimeError(f"creating topic {name} failed: {exc}") from None
    md = admin.list_topics(timeout=timeout_s)
    rtp = topic(settings, "rtp")
    for other in (topic(settings, "bindings"), topic(settings, "rtp-by-source")):
        if rtp in md.topics and other in md.topics:
            n_rtp, n_o = len(md.topics[rtp].partitions), len(md.topics[other].partitions)
            if n_rtp != n_o:
                raise RuntimeError(f"{other} has {n_o} partitions but {rtp} has {n_rtp}: the media join needs "
                                   "them equal (co-partitioned); recreate one of them")
    return result


def run(args: argparse.Namespace) -> int:
    from confluent_kafka.admin import AdminClient

    settings = args.settings
    try:
        if args.action == "create":
            res = create_topics(settings, args.retention_hours)
            for name, state in res.items():
                print(f"{state:8s} {name}")
            return 0
        admin = AdminClient(kafka_config(settings))
        md = admin.list_topics(timeout=15)
        prefix = settings["topic_prefix"] + "."
        for name in sorted(t for t in md.topics if t.startswith(prefix)):
            if args.action == "list":
                print(name)
            else:
                print(f"{name}: {len(md.topics[name].partitions)} partitions")
        return 0
    except Exception as exc:
        print(f"spanscribe topics {args.action}: {exc}", file=sys.stderr)
        return 1
