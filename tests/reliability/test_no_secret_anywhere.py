"""The API key never shows, in any of the reliability scenarios, however they end.

Every scenario of this folder runs with a distinctive key (``sk-REL-0c4f1e``),
the root logger at DEBUG (client, server and WebSocket libraries alike) and a
``record=`` file: a conversation cut mid-turn, a fuzzed peer, a silent server
found by keep-alive, a message over the size limit, invalid audio, caller
audio streaming across a cut, a close during the held-audio flush, a close
while reconnecting to a refusing server, reconnects refused with 503 then
accepted, a 401 while reconnecting, a 401 on the first handshake, and a voice
turn cut before its transcript. The key must appear nowhere in:

* the captured log records: formatted messages, raw ``args``, and the
  formatted tracebacks of records that carry one;
* ``repr(session)``, ``repr(session.provider)``, ``str(session.provider.api_key)``
  (and ``str``/``repr`` of the config and statistics, for good measure);
* the message (and ``repr``) of every ``Error`` and ``Closed`` event;
* the text of every exception a scenario raised (``str``, ``repr``, traceback
  with its chain);
* the recordings.

The local servers demand the key (``expected_key``) where they can, and the
check that a redacted ``Authorization`` header was logged proves DEBUG logging
reached the handshake, so the absence of the key is not an accident.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from engine import events as ev
from engine.server.faults import Faults
from tests.reliability import scenarios
from tests.reliability.support import KEY, Run, logged_text, shown_by
from tests.reliability.test_fuzz_runtime import BAD_AUDIO_EXAMPLE, run_fuzz_example

pytestmark = pytest.mark.anyio


async def test_the_api_key_appears_nowhere(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    recordings: list[Path] = []

    def recording(name: str) -> Path:
        path = tmp_path / f"{name}.jsonl"
        recordings.append(path)
        return path

    def keep(outcome: scenarios.Outcome | Run) -> None:
        raised = outcome.raised if isinstance(outcome, scenarios.Outcome) else None
        shown.extend(shown_by(outcome.session, outcome.observer.events, raised))

    cut = Faults(drop_at="response.function_call_arguments.done", close_code=None)
    keep(await scenarios.cut_conversation(cut, record=recording("cut")))
    observer, _peer, session = await run_fuzz_example(BAD_AUDIO_EXAMPLE, record=recording("fuzz"))
    shown.extend(shown_by(session, observer.events, None))
    keep(await scenarios.silent_server(record=recording("silent")))
    keep(await scenarios.oversized_message(record=recording("oversized")))
    keep(await scenarios.invalid_audio(record=recording("invalid_audio")))
    keep(await scenarios.audio_across_cut(record=recording("audio_across_cut")))
    keep(await scenarios.close_during_flush(record=recording("close_during_flush")))
    keep(await scenarios.close_while_reconnecting(backoff=0.01, record=recording("close_reconnecting")))
    accepted = await scenarios.refused_reconnect(final_status=None, record=recording("refused_503"))
    assert accepted.raised is None and accepted.observer.of(ev.Reconnected)  # the key was accepted
    keep(accepted)
    fatal = await scenarios.refused_reconnect(final_status=401, record=recording("refused_401"))
    assert fatal.raised is not None and fatal.observer.of(ev.Closed)[0].error is not None
    keep(fatal)
    first = await scenarios.refused_handshake(record=recording("refused_handshake"))
    assert first.raised is not None
    keep(first)
    keep(
        await scenarios.voice_cut_before_transcript("input_audio_buffer.committed", record=recording("voice"))
    )

    logged = logged_text(caplog)
    assert "'Authorization': '***'" in logged, "DEBUG logging did not reach the handshake"
    assert "socket lost" in logged and "refused" in logged
    leaks = [text for text in [logged, *shown] if KEY in text]
    assert leaks == [], f"the API key leaked in: {leaks[0][:3000]}"
    for path in recordings:
        text = path.read_text(encoding="utf-8")
        assert text.count("\n") >= 2, f"{path.name} recorded (almost) nothing"
        assert KEY not in text, f"the API key is in the recording {path.name}"
