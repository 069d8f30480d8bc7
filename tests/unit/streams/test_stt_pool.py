"""The STT pool's sending side against a small in-process Vosk-protocol server: chunks that queued up
go out merged into fewer websocket messages with exact call-time anchors, a gap starts a new message,
senders wait when a session's queue is full, and after a lost connection only the audio no final
result covered is sent again."""
from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.server import serve

from streams.core.stt_protocol import Final, SttResult
from streams.stt_pool import WAITS, SttPool, _Chunk, take_contiguous, trim_finalised

RATE = 16000


def chunk(start_s: float, secs: float = 0.1, value: int = 0) -> _Chunk:
    return _Chunk(np.full(int(round(secs * RATE)), value, dtype=np.int16), start_s, RATE)


def test_take_contiguous_merges_until_a_gap() -> None:
    pending = deque([chunk(0.0, value=1), chunk(0.1, value=2), chunk(0.2, value=3), chunk(5.0, value=4)])
    first = take_contiguous(pending, max_samples=RATE * 2)
    assert first.start_s == 0.0 and first.pcm.shape[0] == 3 * 1600
    assert list(first.pcm[::1600]) == [1, 2, 3]
    assert len(pending) == 1 and pending[0].start_s == 5.0


def test_take_contiguous_respects_the_message_size() -> None:
    pending = deque(chunk(i / 10) for i in range(30))
    sizes = []
    while pending:
        sizes.append(take_contiguous(pending, max_samples=RATE).pcm.shape[0])
    assert sizes == [RATE, RATE, RATE]


@given(st.lists(st.sampled_from([0.02, 0.1, 0.5]), min_size=1, max_size=40),
       st.floats(min_value=0.0, max_value=30.0))
def test_trim_finalised_keeps_exactly_the_audio_after_the_final(secs: list[float], final_end: float) -> None:
    retained: deque[_Chunk] = deque()
    t = 0.0
    for s in secs:
        retained.append(chunk(t, s))
        t = retained[-1].end_s
    total = sum(c.pcm.shape[0] for c in retained)
    trim_finalised(retained, final_end)
    kept = sum(c.pcm.shape[0] for c in retained)
    expect = max(0, total - int(round(min(final_end, t) * RATE)))
    assert abs(kept - expect) <= 1
    if retained:
        assert retained[0].start_s >= min(final_end, t) - 1 / RATE


async def _vosk(ws: Any, log: dict[str, Any]) -> None:
    """Vosk-like: config first, a partial per audio message, on eof one final whose words sit at given
    audio times, then close. With ``drop_after`` samples received, answer one final covering the first
    second and drop the connection (once)."""
    json.loads(await ws.recv())
    conn = log.setdefault("connections", [])
    conn.append([])
    received = 0
    async for msg in ws:
        if isinstance(msg, bytes):
            conn[-1].append(len(msg) // 2)
            received += len(msg) // 2
            await ws.send(json.dumps({"partial": ""}))
            if log.get("drop_after") and received >= log["drop_after"]:
                log["drop_after"] = 0
                if not log.get("no_final_on_drop"):
                    await ws.send(json.dumps({"text": "one", "result": [
                        {"word": "one", "start": 0.5, "end": 1.0, "conf": 1.0}]}))
                await ws.close()
                return
            continue
        if json.loads(msg).get("eof"):
            words = [{"word": f"w{i}", "start": a, "end": a + 0.1, "conf": 1.0} for i, a in enumerate(log["at"])]
            await ws.send(json.dumps({"text": " ".join(w["word"] for w in words), "result": words}))
            await ws.close()
            return


async def _run_pool(log: dict[str, Any], sends: list[tuple[float, float]], queue_chunks: int = 200,
                    yield_between: bool = False, behind_s: float = 0.0) -> list[SttResult]:
    results: list[SttResult] = []
    async with serve(lambda ws: _vosk(ws, log), "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        pool = SttPool([f"ws://127.0.0.1:{port}"], lambda k, r: results.append(r), queue_chunks=queue_chunks,
                       max_backoff_s=0.1)
        for start_s, secs in sends:
            await pool.send("k", chunk(start_s, secs).pcm, start_s, behind_s)
            if yield_between:
                await asyncio.sleep(0.01)
        await pool.close("k")
    return results


def test_queued_chunks_go_out_merged_with_exact_call_times() -> None:
    # 3 s of 100 ms chunks from call time 0, then a gap, then 1 s from call time 10: sent without yielding
    # to the loop (a backlog), they leave as a few large messages; the anchors keep word times exact
    sends = [(i / 10, 0.1) for i in range(30)] + [(10 + i / 10, 0.1) for i in range(10)]
    log: dict[str, Any] = {"at": [2.95, 3.5]}  # audio times: inside the first run, and 0.5 s into the second
    results = asyncio.run(_run_pool(log, sends))
    msgs = log["connections"][0]
    assert sum(msgs) == 40 * 1600
    assert len(msgs) <= 4, msgs  # 2 s max per message: 2 s + 1 s + 1 s (the gap splits)
    final = [r for r in results if isinstance(r, Final)]
    assert [w.start_s for w in final[0].words] == [2.95, 10.5]


def test_a_full_queue_makes_the_sender_wait_and_nothing_is_lost() -> None:
    before = WAITS._value.get()
    log: dict[str, Any] = {"at": [0.1]}
    asyncio.run(_run_pool(log, [(i / 10, 0.1) for i in range(20)], queue_chunks=3))
    assert WAITS._value.get() > before
    assert sum(sum(c) for c in log["connections"]) == 20 * 1600


def test_after_a_lost_connection_only_audio_after_the_last_final_is_resent() -> None:
    # the server answers a final ending at 1.0 s once it has 2 s, then drops; the pool reconnects and
    # must resend from 1.0 s (not from 0, not from 2 s), then the rest, then eof
    log: dict[str, Any] = {"at": [0.2], "drop_after": 2 * RATE}
    results = asyncio.run(_run_pool(log, [(i / 10, 0.1) for i in range(40)], yield_between=True))
    first, second = log["connections"][0], log["connections"][1]
    assert sum(first) >= 2 * RATE
    assert sum(second) == 4 * RATE - RATE  # everything after the final's end at 1.0 s, once
    finals = [r for r in results if isinstance(r, Final)]
    assert [f.text for f in finals] == ["one", "w0"]
    assert finals[1].words[0].start_s == 1.2  # audio 0.2 s of the new connection = call time 1.2 s


def test_fresh_audio_goes_out_at_once_and_a_backlog_in_larger_messages() -> None:
    sends = [(i / 10, 0.1) for i in range(25)]
    live: dict[str, Any] = {"at": [0.1]}
    asyncio.run(_run_pool(live, sends, yield_between=True))
    assert live["connections"][0] == [1600] * 25  # real time: every 100 ms chunk sent when it comes
    backlog: dict[str, Any] = {"at": [0.1]}
    asyncio.run(_run_pool(backlog, sends, yield_between=True, behind_s=3600.0))
    msgs = backlog["connections"][0]
    assert sum(msgs) == 25 * 1600 and len(msgs) <= 5, msgs  # about 1 s per message, the rest at eof


def test_the_resend_buffer_is_bounded_when_no_final_comes() -> None:
    # a speaker that never gets a final result: after a lost connection only the last max_resend_s
    # (here 1 s) is sent again, and what was dropped is counted
    from streams.stt_pool import UNRESENDABLE_S

    before = UNRESENDABLE_S._value.get()
    log: dict[str, Any] = {"at": [0.2], "drop_after": 3 * RATE, "no_final_on_drop": True}

    async def main() -> None:
        async with serve(lambda ws: _vosk(ws, log), "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            pool = SttPool([f"ws://127.0.0.1:{port}"], lambda k, r: None, max_backoff_s=0.1, max_resend_s=1.0)
            for i in range(40):
                await pool.send("k", chunk(i / 10).pcm, i / 10)
                await asyncio.sleep(0.01)
            await pool.close("k")

    asyncio.run(main())
    first, second = log["connections"][0], log["connections"][1]
    assert sum(first) >= 3 * RATE
    # resent: at most 1 s (+ one chunk) of what the first connection had, then the rest
    assert sum(second) <= (1.1 * RATE) + (4 * RATE - sum(first))
    assert UNRESENDABLE_S._value.get() - before >= 1.9
