"""AckTracker: records are released in offset order, only once their speakers' audio is covered
(or a bound forces them), so the committed offset never passes audio without a final result."""
from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.acks import AckTracker

A, B = ("call", "caller"), ("call", "callee")


def test_release_waits_for_coverage_in_offset_order() -> None:
    t = AckTracker(max_hold_us=10_000_000)
    t.hold(0, 10, 1_000_000, "r10", [(A, 1.0)])
    t.hold(0, 11, 1_020_000, "r11", [(B, 0.5)])
    t.hold(0, 12, 1_040_000, "r12", [])
    assert t.release(0) == []
    t.cover(B, 0.6)  # r11 covered but r10 is not: nothing may pass r10
    assert t.release(0) == []
    t.cover(A, 1.0)
    assert t.release(0) == ["r10", "r11", "r12"]
    assert t.held() == 0


def test_claims_already_covered_are_not_held() -> None:
    t = AckTracker()
    t.cover(A, 5.0)
    t.hold(1, 0, 0, "x", [(A, 4.0), (A, 5.0)])
    assert t.release(1) == ["x"]


def test_silent_speaker_is_bounded_by_capture_age_and_count() -> None:
    t = AckTracker(max_hold_us=2_000_000, max_records=3)
    t.hold(0, 0, 0, "a", [(A, 1.0)])
    t.hold(0, 1, 1_000_000, "b", [(A, 2.0)])
    assert t.release(0) == []
    t.hold(0, 2, 2_500_000, "c", [(A, 3.0)])  # "a" is now 2.5 s old
    assert t.release(0) == ["a"] and t.forced["age"] == 1
    for i in range(3, 6):
        t.hold(0, i, 2_600_000, f"r{i}", [(A, 9.0)])
    assert t.release(0) == ["b", "c"] and t.forced["count"] == 2  # 5 held > 3: the oldest go
    assert t.held(0) == 3 and t.oldest_age_us() == 0


def test_in_a_backlog_the_age_bound_also_waits_for_wall_time() -> None:
    # a catching-up worker: 60 s of capture time handled in 0.1 s of wall time; the STT server has not
    # answered yet, so nothing is forced out by capture age until max_hold_wall_s has passed too
    t = AckTracker(max_hold_us=30_000_000, max_hold_wall_s=10.0)
    for i in range(600):
        t.hold(0, i, i * 100_000, f"r{i}", [(A, i / 10 + 0.1)], wall_s=100.0 + i / 6000)
    assert t.release(0, wall_now_s=100.1) == [] and t.forced["age"] == 0
    t.cover(A, 5.0)  # finals for the first 5 s: those records go, covered
    assert len(t.release(0, wall_now_s=100.2)) == 50 and t.forced["age"] == 0
    out = t.release(0, wall_now_s=110.05)  # 10 s of wall time later the capture-age bound applies
    assert out and t.forced["age"] == len(out)


def test_claim_latest_and_revoke() -> None:
    t = AckTracker()
    assert not t.claim_latest(0, [(A, 1.0)])
    t.hold(0, 0, 0, "a")
    assert t.claim_latest(0, [(A, 1.0)])
    assert t.release(0) == []
    t.cover(A, math.inf)
    assert t.release_all() == {0: ["a"]}
    t.hold(2, 7, 0, "z", [(B, 1.0)])
    assert t.revoke(2) == 1 and t.release(2) == [] and t.first_held_offset(2) is None


ops = st.lists(st.one_of(
    st.tuples(st.just("hold"), st.integers(0, 1), st.lists(st.tuples(st.sampled_from([A, B]), st.floats(0, 20)),
                                                           max_size=3), st.integers(0, 400_000)),
    st.tuples(st.just("cover"), st.sampled_from([A, B]), st.floats(0, 20)),
    st.tuples(st.just("release"), st.integers(0, 1)),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_released_is_an_ordered_prefix_and_covered_unless_forced(script: list[tuple]) -> None:
    t = AckTracker(max_hold_us=3_000_000, max_records=8)
    offsets = {0: 0, 1: 0}
    clock = {0: 0, 1: 0}
    claims: dict[tuple[int, int], list[tuple[object, float]]] = {}
    released: dict[int, list[int]] = {0: [], 1: []}
    for op in script:
        if op[0] == "hold":
            _, p, cl, dt = op
            clock[p] += dt
            off = offsets[p]
            offsets[p] += 1
            claims[(p, off)] = cl
            t.hold(p, off, clock[p], (p, off), cl)
        elif op[0] == "cover":
            t.cover(op[1], op[2])
        else:
            p = op[1]
            before = dict(t.forced)
            toks = t.release(p)
            forced = sum(t.forced.values()) - sum(before.values())
            uncovered = [tok for tok in toks if any(end > t.covered.get(k, -math.inf) for k, end in claims[tok])]
            assert len(uncovered) <= forced  # every record released with open audio is counted
            released[p] += [off for _, off in toks]
            assert t.held(p) <= 8
    for offs in released.values():
        assert offs == list(range(len(offs)))  # a prefix, in order, no gap: the commit never skips
