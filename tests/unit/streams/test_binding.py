from __future__ import annotations

from typing import Any

from streams.core.binding import BindingIndex

KEY = "s1/10.0.0.1/4000"


def b(call: str, frm: int, until: int | None = None, version: int = 1, speaker: str = "callee") -> dict[str, Any]:
    return {"stream_key": KEY, "site": "s1", "call_id": call, "speaker": speaker, "role": None,
            "call_start_us": frm, "valid_from_us": frm, "valid_until_us": until, "version": version,
            "encrypted": False, "payload_map": []}


def test_port_reused_by_later_call() -> None:
    idx = BindingIndex()
    idx.apply(b("A", 100))
    idx.apply(b("A", 100, until=500))  # BYE closes call A
    idx.apply(b("B", 800))
    assert idx.lookup(KEY, 50) is None
    assert idx.lookup(KEY, 100)["call_id"] == "A"  # type: ignore[index]
    assert idx.lookup(KEY, 499)["call_id"] == "A"  # type: ignore[index]
    assert idx.lookup(KEY, 500) is None
    assert idx.lookup(KEY, 900)["call_id"] == "B"  # type: ignore[index]
    assert len(idx.bindings(KEY)) == 2  # the close replaced the open record


def test_never_closed_binding_superseded_by_later_start() -> None:
    idx = BindingIndex()
    idx.apply(b("A", 100))  # no BYE seen
    idx.apply(b("B", 1000))
    assert idx.lookup(KEY, 500)["call_id"] == "A"  # type: ignore[index]
    assert idx.lookup(KEY, 2000)["call_id"] == "B"  # type: ignore[index]


def test_versions_and_open_for() -> None:
    idx = BindingIndex()
    idx.apply(b("A", 100, version=1))
    idx.apply(b("A", 300, version=3))  # codec change: new version first ...
    idx.apply(b("A", 100, until=300, version=1))  # ... then the old one closes
    assert idx.lookup(KEY, 200)["version"] == 1  # type: ignore[index]
    assert idx.lookup(KEY, 300)["version"] == 3  # type: ignore[index]
    assert [x["version"] for x in idx.open_for(KEY, "A", "callee")] == [3]


def test_expire_and_bounded() -> None:
    idx = BindingIndex(max_per_key=3)
    for i in range(5):
        idx.apply(b(f"C{i}", i * 100, until=i * 100 + 50))
    assert len(idx.bindings(KEY)) == 3
    assert idx.expire(10_000, keep_closed_us=1000) == 3
    assert idx.bindings(KEY) == [] and KEY not in idx.store
