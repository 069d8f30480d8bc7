"""Two workers share the load by partitions (Faust's assignor keeps co-partitioned topics together): a
second `spanscribe worker` with the same application id joins the module's worker, concurrent calls
are spread over both, and a call whose SIP partition and RTP partitions belong to different workers
gets its bindings through the bindings topic. Every call's CallTranscript is complete, every turn once.
See conftest.py."""
from __future__ import annotations

import json
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from callgen import Call, Turn, next_start_us  # noqa: E402
from conftest import PARTITIONS, Pipeline, Proc, _free_port  # noqa: E402
from test_worker import assert_turns, cid  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(name))


def _partitions(port: int) -> set[int]:
    """The rtp partitions a worker holds, from its /readyz."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
        return set(json.loads(r.read())["partitions"])


def test_two_workers_share_the_calls(pipeline: Pipeline, tmp_path: Path) -> None:
    from spanscribe.partitioning import partition_for

    first = pipeline.worker
    web2 = _free_port()
    argv = list(first.argv)
    argv[argv.index("--web-port") + 1] = str(web2)
    argv[argv.index("--data-dir") + 1] = str(tmp_path / "data2")
    second = Proc("worker2", argv, tmp_path / "worker2.log", first.env)
    second.start()
    try:
        deadline = time.monotonic() + 120
        members: dict[int, set[int]] = {}
        while time.monotonic() < deadline:
            if not second.alive():
                raise AssertionError("second worker exited:\n" + second.log()[-4000:])
            if _ready(pipeline.web_port) and _ready(web2):
                members = {port: _partitions(port) for port in (pipeline.web_port, web2)}
                if all(members.values()) and sum(len(v) for v in members.values()) == PARTITIONS:
                    break
            time.sleep(0.5)
        assert all(members.values()), members
        owner = {part: m for m, parts in members.items() for part in parts}
        assert set(owner) == set(range(PARTITIONS)), owner
        time.sleep(2.0)  # both settled after the rebalance

        start = next_start_us()
        calls = [Call(cid(f"two-{i}"), caller_port=41000 + 2 * i, callee_port=51000 + 2 * i, start_us=start,
                      turns=[Turn("caller", 0.5, 1.0), Turn("callee", 2.0, 1.0)], media_s=4.0,
                      ssrc={"caller": 0x51510000 + i, "callee": 0x61610000 + i}) for i in range(8)]
        # the signalling of a call and its RTP on different workers: bindings cross through the topic
        crossing = [c.call_id for c in calls
                    if {owner[partition_for(c.stream_key(s).encode(), PARTITIONS)] for s in ("caller", "callee")}
                    != {owner[partition_for(c.key.encode(), PARTITIONS)]}]
        print("rtp partitions per worker:", members, "calls across workers:", len(crossing))
        assert crossing, "no call has its SIP and RTP on different workers with these ports"

        pipeline.send_calls(calls)
        docs: dict[str, dict[str, Any]] = {}
        for c in calls:
            docs[c.call_id] = pipeline.wait_call(c.call_id, timeout_s=120)
        for c in calls:
            doc = docs[c.call_id]
            assert doc["end_reason"] == "bye", doc
            assert_turns(doc, c)
        # both workers did media and signalling work
        for port in (pipeline.web_port, web2):
            assert _metric(port, 'spanscribe_worker_records_total{agent="media"}') > 0
            assert _metric(port, 'spanscribe_worker_records_total{agent="signalling"}') > 0
        # no final segment twice (a byte-identical re-delivery aside)
        for c in calls:
            seen: dict[str, set[bytes]] = {}
            for m, r in pipeline.segments(c.call_id):
                if r["is_final"]:
                    seen.setdefault(r["segment_id"], set()).add(m.value())
            assert all(len(v) == 1 for v in seen.values()), seen
            assert len(seen) == len(c.turns), (c.call_id, len(seen))
    finally:
        second.kill(signal.SIGTERM)
        print("second worker log:", tmp_path / "worker2.log")
