"""Truncation arithmetic of the playback ledger, as properties."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from engine.core.playback import PlaybackLedger, whole_ms

BYTES_PER_MS = 48.0  # 24 kHz PCM16

chunks = st.lists(st.integers(min_value=48, max_value=20_000).map(lambda n: n * 2), min_size=1, max_size=30)


@given(items=st.lists(chunks, min_size=1, max_size=4), elapsed=st.floats(0, 120), acks=st.data())
def test_played_never_exceeds_received(items: list[list[int]], elapsed: float, acks: st.DataObject) -> None:
    ledger = PlaybackLedger(BYTES_PER_MS)
    for index, sizes in enumerate(items):
        for size in sizes:
            ledger.received("r1", f"i{index}", size, now=10.0)
    for index in range(len(items)):
        if acks.draw(st.booleans()):
            ledger.played(f"i{index}", acks.draw(st.floats(0, 1e6)))
    for cut in ledger.positions("r1", now=10.0 + elapsed):
        assert 0 <= cut.played_ms <= cut.received_ms
        assert cut.received_ms == int(sum(items[int(cut.item_id[1:])]) / BYTES_PER_MS)


@given(sizes=chunks)
def test_nothing_played_means_delete(sizes: list[int]) -> None:
    ledger = PlaybackLedger(BYTES_PER_MS)
    for size in sizes:
        ledger.received("r1", "i0", size, now=5.0)
    (cut,) = ledger.cuts("r1", now=5.0)
    assert cut.played_ms == 0
    assert cut.delete


@given(first=chunks, second=chunks, elapsed_ms=st.integers(0, 200_000))
# 1.001 s is 1000.9999999999999 ms in binary floating point: flooring that raw
# value once played 1000 of 1001 ms (the ledger's rounding was wrong, not the test).
@example(first=[96, 96, 96, 96, 7664, 40000], second=[96], elapsed_ms=1001)
@example(first=[96], second=[96, 96, 96, 7664, 40000], elapsed_ms=1001)
def test_multi_item_estimate_plays_items_in_order(
    first: list[int], second: list[int], elapsed_ms: int
) -> None:
    ledger = PlaybackLedger(BYTES_PER_MS)
    for size in first:
        ledger.received("r1", "a", size, now=0.0)
    for size in second:
        ledger.received("r1", "b", size, now=0.0)
    a, b = ledger.positions("r1", now=elapsed_ms / 1000)
    assert (a.received_ms, b.received_ms) == (sum(first) // 48, sum(second) // 48)
    assert a.played_ms == min(elapsed_ms, a.received_ms)
    if b.played_ms > 0:
        assert a.played_ms == a.received_ms  # the second item plays only after the first is done
    assert b.played_ms == min(max(0, elapsed_ms - a.received_ms), b.received_ms)


@given(start=st.floats(0, 1e7), elapsed_us=st.integers(0, 10**9))
def test_the_clock_is_read_to_the_microsecond_then_floored(start: float, elapsed_us: int) -> None:
    """Whole milliseconds of a clock difference do not depend on where the clock started."""
    ledger = PlaybackLedger(BYTES_PER_MS)
    ledger.received("r1", "a", 48 * 2_000_000, now=start)  # 2 000 000 ms, more than any elapsed time
    (a,) = ledger.positions("r1", now=start + elapsed_us / 1_000_000)
    assert a.played_ms == elapsed_us // 1000


@example(ms=1000.9999999999999, expected=1001)
@example(ms=999.9994, expected=999)
@example(ms=0.0004, expected=0)
@given(ms=st.integers(0, 10**7), expected=st.none())
def test_whole_ms_is_one_rule(ms: float, expected: int | None) -> None:
    """Nearest microsecond, then the floor: whole values stay, float noise vanishes."""
    if expected is None:
        assert whole_ms(ms) == ms
        assert whole_ms(ms + 0.9994) == ms
        assert whole_ms(ms + 0.9999999) == ms + 1  # noise below a microsecond
    else:
        assert whole_ms(ms) == expected


def test_received_ms_at_44100_hz_floors_after_the_microsecond() -> None:
    """88.2 bytes per ms: 882 bytes are exactly 10 ms; 880 bytes are 9.977 ms, floored to 9."""
    ledger = PlaybackLedger(88.2)
    ledger.received("r1", "a", 882, now=0.0)
    ledger.received("r1", "b", 880, now=0.0)
    assert (ledger.received_ms("a"), ledger.received_ms("b")) == (10, 9)


def test_acknowledgements_win_over_the_clock() -> None:
    ledger = PlaybackLedger(BYTES_PER_MS)
    ledger.received("r1", "a", 48_000, now=0.0)  # 1000 ms
    assert ledger.played("a", 250.7)
    (cut,) = ledger.cuts("r1", now=100.0)  # the clock says all of it; the speaker says 250 ms
    assert (cut.played_ms, cut.received_ms, cut.delete) == (250, 1000, False)


def test_acknowledgements_are_cumulative_and_monotonic() -> None:
    ledger = PlaybackLedger(BYTES_PER_MS)
    ledger.received("r1", "a", 48_000, now=0.0)
    ledger.played("a", 600)
    ledger.played("a", 300)  # a late, smaller report does not move playback back
    assert ledger.positions("r1", now=0.0)[0].played_ms == 600


def test_unknown_item_acknowledgement_is_refused() -> None:
    assert not PlaybackLedger(BYTES_PER_MS).played("nope", 10)


def test_interruption_before_the_first_delta_has_nothing_to_cut() -> None:
    ledger = PlaybackLedger(BYTES_PER_MS)
    assert ledger.cuts("r1", now=3.0) == []
    assert not ledger.has_audio("r1")
    assert not ledger.still_playing("r1", now=3.0)


def test_fully_played_audio_needs_no_cut_and_is_not_playing() -> None:
    ledger = PlaybackLedger(BYTES_PER_MS)
    ledger.received("r1", "a", 4800, now=0.0)  # 100 ms
    assert ledger.still_playing("r1", now=0.05)
    assert not ledger.still_playing("r1", now=0.2)
    assert ledger.cuts("r1", now=0.2) == []


def test_forget_drops_a_response() -> None:
    ledger = PlaybackLedger(BYTES_PER_MS)
    ledger.received("r1", "a", 4800, now=0.0)
    ledger.forget("r1")
    assert ledger.positions("r1", now=1.0) == []
    assert ledger.received_ms("a") == 0
