"""The mark ledger: examples, then properties over random call histories (deterministic)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.gateway.marks import MarkLedger, Played

DETERMINISTIC = settings(derandomize=True, max_examples=300, deadline=None, database=None)


def test_an_echo_reports_the_position_of_everything_sent_before_the_mark() -> None:
    ledger = MarkLedger()
    ledger.sent("a", 60)
    ledger.sent("a", 60)
    first = ledger.mark()
    ledger.sent("a", 40)
    second = ledger.mark()
    assert first is not None and second is not None
    assert ledger.echoed(first) == [Played(item_id="a", ms=120)]
    assert ledger.echoed(second) == [Played(item_id="a", ms=160)]
    assert ledger.pending == 0


def test_no_mark_without_audio_since_the_last_one() -> None:
    ledger = MarkLedger()
    assert ledger.mark() is None
    ledger.sent("a", 20)
    assert ledger.mark() is not None
    assert ledger.mark() is None


def test_a_mark_spanning_two_items_reports_both() -> None:
    ledger = MarkLedger()
    ledger.sent("a", 100)
    ledger.sent("b", 30)
    name = ledger.mark()
    assert name is not None
    assert ledger.echoed(name) == [Played(item_id="a", ms=100), Played(item_id="b", ms=30)]


def test_echoes_of_marks_dropped_by_clear_are_ignored() -> None:
    ledger = MarkLedger()
    ledger.sent("a", 60)
    heard = ledger.mark()
    ledger.sent("a", 60)
    dropped = ledger.mark()
    assert heard is not None and dropped is not None
    assert ledger.echoed(heard) == [Played(item_id="a", ms=60)]
    assert ledger.clear() == [dropped]
    assert ledger.echoed(dropped) == []  # Twilio echoes it at once: not played
    assert ledger.played_ms("a") == 60
    stats = ledger.statistics()
    assert (stats.ignored_after_clear, stats.unknown, stats.pending) == (1, 0, 0)


def test_audio_of_a_cleared_item_never_counts_again() -> None:
    ledger = MarkLedger()
    ledger.sent("a", 60)
    ledger.clear()
    ledger.sent("a", 60)  # a late chunk of the interrupted item
    assert ledger.mark() is None
    ledger.sent("b", 20)
    name = ledger.mark()
    assert name is not None
    assert ledger.echoed(name) == [Played(item_id="b", ms=20)]


def test_an_unknown_echo_is_counted_not_reported() -> None:
    ledger = MarkLedger()
    assert ledger.echoed("nobody-sent-this") == []
    assert ledger.statistics().unknown == 1


def test_a_later_echo_settles_the_earlier_marks() -> None:
    ledger = MarkLedger()
    ledger.sent("a", 20)
    first = ledger.mark()
    ledger.sent("b", 20)
    second = ledger.mark()
    assert first is not None and second is not None
    assert ledger.echoed(second) == [Played(item_id="a", ms=20), Played(item_id="b", ms=20)]
    assert ledger.echoed(first) == []  # out of order: already settled, not unknown
    assert ledger.statistics().unknown == 0


def test_fractional_milliseconds_are_floored() -> None:
    ledger = MarkLedger()
    ledger.sent("a", 12.9)
    name = ledger.mark()
    assert name is not None
    assert ledger.echoed(name) == [Played(item_id="a", ms=12)]


def test_negative_durations_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        MarkLedger().sent("a", -1)


# A call history: audio sent for a few items, marks, echoes (in order, or of any name), clears.
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.sampled_from("abc"), st.floats(0, 500, allow_nan=False)),
        st.tuples(st.just("mark")),
        st.tuples(st.just("echo_next")),
        st.tuples(st.just("echo_any"), st.integers(0, 50)),
        st.tuples(st.just("clear")),
    ),
    max_size=60,
)


@DETERMINISTIC
@given(_OPS)
def test_properties_over_call_histories(ops: list[tuple[object, ...]]) -> None:
    ledger = MarkLedger()
    names: list[str] = []  # every name handed out, in order
    queue: list[str] = []  # marks the simulated carrier still holds, in order
    dropped: set[str] = set()  # names pending when clear was sent
    sent: dict[str, float] = {}  # model: ms sent per item, before any clear froze it
    at_mark: dict[str, dict[str, float]] = {}  # name -> ms sent per item when it was named
    frozen_at: dict[str, int] = {}  # item cut by clear -> what was acknowledged then
    reported: dict[str, int] = {}
    for op in ops:
        kind = op[0]
        if kind == "send":
            item, ms = str(op[1]), float(op[2])  # type: ignore[arg-type]
            ledger.sent(item, ms)
            if item not in frozen_at:
                sent[item] = sent.get(item, 0.0) + ms
        elif kind == "mark":
            name = ledger.mark()
            if name is not None:
                names.append(name)
                queue.append(name)
                at_mark[name] = dict(sent)
        elif kind == "clear":
            for name in ledger.clear():
                dropped.add(name)
            for item in sent:
                frozen_at.setdefault(item, reported.get(item, 0))
            queue.clear()
            sent = {k: v for k, v in sent.items() if k not in frozen_at}
        else:
            if kind == "echo_next":
                if not queue:
                    continue
                name = queue.pop(0)
            else:
                if not names:
                    continue
                name = names[int(op[1]) % len(names)]  # type: ignore[call-overload]
                if name in queue:
                    queue.remove(name)
            played = ledger.echoed(name)
            if name in dropped:
                assert played == [], "an echo after clear counted as played"
            for p in played:
                # Never more than was sent for the item when the mark was named.
                assert p.ms <= at_mark[name].get(p.item_id, 0.0) + 1e-9
                assert p.ms <= ledger.sent_ms(p.item_id)
                assert p.ms > reported.get(p.item_id, -1), "a position went backwards"
                reported[p.item_id] = p.ms
    assert len(set(names)) == len(names), "mark names repeat within a call"
    for item, ms in frozen_at.items():
        assert ledger.played_ms(item) == ms, "a cleared item gained played time after the clear"


@DETERMINISTIC
@given(st.lists(st.sampled_from(["send", "clear", "echo"]), min_size=20, max_size=400))
def test_names_are_unique_over_long_calls(steps: list[str]) -> None:
    ledger = MarkLedger()
    names: list[str] = []
    item = 0  # a clear cuts the item playing; the next response has new items
    for step in steps:
        if step == "send":
            ledger.sent(f"item{item}", 20)
            name = ledger.mark()
            assert name is not None
            names.append(name)
        elif step == "clear":
            ledger.clear()
            item += 1
        elif names:
            ledger.echoed(names[-1])
    assert len(set(names)) == len(names)
