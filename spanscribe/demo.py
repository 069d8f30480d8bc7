"""``spanscribe demo``: README's first command.

Foundation stage: start the local Kafka broker, create the topics, round-trip one example record of
every schema through it and print them. (The end-to-end transcript demo replaces this once the edge,
the worker and the STT server land.)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer

from schemas.codec import SCHEMA_NAMES, AvroCodec
from schemas.examples import example_records
from spanscribe.config import kafka_config
from spanscribe.kafka.cli import broker_for
from spanscribe.topics import create_topics


def _printable(v: Any) -> Any:
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    if isinstance(v, dict):
        return {k: _printable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_printable(x) for x in v]
    return v


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    broker = broker_for(args.port)
    print(f"demo: starting the local Kafka broker on 127.0.0.1:{args.port} ...", file=sys.stderr)
    bootstrap = broker.start()
    settings = dict(args.settings, bootstrap_servers=bootstrap)
    try:
        for name, state in create_topics(settings).items():
            print(f"demo: topic {name}: {state}", file=sys.stderr)
        topic = f"{settings['topic_prefix']}.demo-roundtrip"
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(kafka_config(settings))
        if topic not in admin.list_topics(timeout=10).topics:
            admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
        run_id = uuid.uuid4().hex[:8].encode()
        prod = Producer(kafka_config(settings, **{"enable.idempotence": True, "acks": "all"}))
        recs = example_records()
        for name in SCHEMA_NAMES:
            prod.produce(topic, key=run_id + b"/" + name.encode(), value=AvroCodec(name).encode(recs[name]))
        if prod.flush(30):
            print("demo: could not deliver the example records", file=sys.stderr)
            return 1
        cons = Consumer(kafka_config(settings, **{"group.id": f"demo-{run_id.decode()}",
                                                  "auto.offset.reset": "earliest"}))
        cons.subscribe([topic])
        got: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 60
        while len(got) < len(SCHEMA_NAMES) and time.monotonic() < deadline:
            for m in cons.consume(100, timeout=0.5):
                if m.error() or not m.key() or not m.key().startswith(run_id + b"/"):
                    continue
                name = m.key().split(b"/", 1)[1].decode()
                got[name] = AvroCodec(name).decode(m.value(), topic=m.topic(), partition=m.partition(),
                                                   offset=m.offset())
        cons.close()
        del prod, admin  # close client connections before the broker stops
        for name in SCHEMA_NAMES:
            ok = got.get(name) == recs[name]
            print(f"--- {name}: {'round-tripped OK' if ok else 'MISMATCH'}")
            print(json.dumps(_printable(got.get(name)), indent=None)[:400])
        print(f"demo: {len(got)}/{len(SCHEMA_NAMES)} schemas round-tripped through {bootstrap} "
              f"in {time.monotonic() - t0:.1f}s", file=sys.stderr)
        return 0 if all(got.get(n) == recs[n] for n in SCHEMA_NAMES) else 1
    finally:
        if not args.keep_running:
            broker.stop()
