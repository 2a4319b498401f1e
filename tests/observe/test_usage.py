"""Issue 16: token usage by modality and cache, and its cost by a profile's price table."""

from __future__ import annotations

import pytest

from engine.core.metrics import Prices, TurnClock, TurnMetrics, token_counts
from engine.observe.usage import UsageLedger
from engine.profiles import INWORLD, OPENAI
from engine.protocol.items import Usage

GA = Usage(  # as OpenAI GA reports it: details by modality, cached input broken down too
    total_tokens=1300,
    input_tokens=1000,
    output_tokens=300,
    input_token_details={
        "text_tokens": 200,
        "audio_tokens": 700,
        "image_tokens": 100,
        "cached_tokens": 500,
        "cached_tokens_details": {"text_tokens": 100, "audio_tokens": 400, "image_tokens": 0},
    },
    output_token_details={"text_tokens": 60, "audio_tokens": 240},
)


def test_tokens_by_modality_and_cache() -> None:
    assert token_counts(GA) == {
        "input_text": 100,
        "input_audio": 300,
        "input_image": 100,
        "cached_text": 100,
        "cached_audio": 400,
        "output_text": 60,
        "output_audio": 240,
    }


def test_undetailed_tokens_count_as_text_and_cached_tokens_without_breakdown_as_cached_text() -> None:
    assert token_counts(Usage(input_tokens=50, output_tokens=7)) == {"input_text": 50, "output_text": 7}
    usage = Usage(input_tokens=50, output_tokens=0, input_token_details={"cached_tokens": 20})
    assert token_counts(usage) == {"input_text": 30, "cached_text": 20}


def test_the_openai_profile_prices_a_turn() -> None:
    prices = OPENAI.prices
    assert prices is not None and INWORLD.prices is None
    expected = (100 * 4 + 300 * 32 + 100 * 5 + 100 * 0.4 + 400 * 0.4 + 60 * 16 + 240 * 64) / 1e6
    assert prices.cost(GA) == pytest.approx(expected)
    assert OPENAI.core_options().prices is prices


def test_a_turn_of_two_responses_sums_usage_details_and_costs_once() -> None:
    clock = TurnClock(Prices(output_audio=1e6))  # 1 per output audio token
    clock.add_usage(GA)
    clock.add_usage(GA)
    record = TurnMetrics(**clock.finish("resp_1", 1.0))
    assert record.usage is not None and record.usage.output_tokens == 600
    assert record.usage.input_token_details is not None
    assert record.usage.input_token_details["cached_tokens_details"]["audio_tokens"] == 800
    assert record.cost == pytest.approx(480)
    assert TurnMetrics(**TurnClock().finish(None, 2.0)).cost is None  # no price table: no cost


def test_the_ledger_sums_per_turn_and_per_call() -> None:
    ledger = UsageLedger()
    ledger.add(TurnMetrics(turn=1, usage=GA, cost=0.5))
    ledger.add(TurnMetrics(turn=2, usage=Usage(input_tokens=10, output_tokens=5), cost=0.25))
    ledger.add(TurnMetrics(turn=3))  # a turn without usage
    usage = ledger.usage()
    assert [t.turn for t in usage.turns] == [1, 2, 3]
    assert (usage.input_tokens, usage.output_tokens) == (1010, 305)
    assert usage.tokens["input_text"] == 110 and usage.tokens["output_audio"] == 240
    assert usage.cost == pytest.approx(0.75)
    assert UsageLedger().usage().cost is None


def test_the_ledger_keeps_every_turns_sums_but_only_the_recent_turns_own_figures() -> None:
    ledger = UsageLedger(recent=3)
    for n in range(1, 8):
        ledger.add(TurnMetrics(turn=n, usage=Usage(input_tokens=n, output_tokens=2 * n), cost=0.5))
    usage = ledger.usage()
    assert [t.turn for t in usage.turns] == [5, 6, 7]  # bounded: memory stays flat over a long call
    assert usage.turn_count == 7
    assert usage.input_tokens == sum(range(1, 8)) and usage.output_tokens == 2 * sum(range(1, 8))
    assert usage.cost == 3.5
