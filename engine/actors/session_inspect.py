"""What a ``Session`` shows of itself: states, history, configuration, usage, statistics.

A mixin of :class:`engine.actors.session.Session` (the facade stays one class);
every reading is a snapshot, valid before ``connect()`` and after close too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from engine.actors.values import SessionStatistics
from engine.core.diagram import diagram
from engine.core.lifecycle import Lifecycle, LifecycleMachine
from engine.core.states import CORE_MACHINES, Phase, State
from engine.observe.usage import CallUsage, UsageLedger
from engine.protocol.config import SessionConfig
from engine.protocol.items import Item

if TYPE_CHECKING:
    from engine.actors.dispatch import Dispatcher
    from engine.actors.supervisor import Supervisor
    from engine.core.conversation import Conversation


class Inspection:
    """The ``Session``'s read-only views (set up by ``Session.__init__``)."""

    _config: SessionConfig
    _initial: tuple[Item, ...]
    _usage: UsageLedger
    _dispatcher: Dispatcher
    _lifecycle: LifecycleMachine
    _supervisor: Supervisor

    @property
    def lifecycle(self) -> Lifecycle:
        """Where the connection stands: ``new``, ``connecting``, ``open``, ``rollover_due``, ``rolling_over``,
        ``reconnecting``, ``closing``, ``closed``."""
        return self._lifecycle.current

    @property
    def state(self) -> State:
        """Whose turn it is (``State.CONNECTING`` before the first connect)."""
        conv = self._supervisor.conv
        return conv.state if conv is not None else State.CONNECTING

    @property
    def phase(self) -> Phase:
        """Where the response slot stands."""
        conv = self._supervisor.conv
        return conv.phase if conv is not None else Phase.IDLE

    @property
    def history(self) -> tuple[Item, ...]:
        """The locally mirrored conversation items, in order."""
        conv = self._supervisor.conv
        return conv.history.items() if conv is not None else self._initial

    @property
    def config(self) -> SessionConfig:
        """The configuration as last sent (with provider defaults and registered tools)."""
        conv = self._supervisor.conv
        return conv.config if conv is not None else self._config

    @property
    def states(self) -> Mapping[str, str]:
        """Every machine's current state by machine name (``lifecycle`` included), a snapshot.

        The names are those of ``engine.core.states.MACHINES``; before the first connect the
        core's machines read their initial states.
        """
        conv = self._supervisor.conv
        current = dict(conv.states) if conv is not None else _initial_states()
        current["lifecycle"] = str(self._lifecycle.current)
        return current

    def watch_steps(self, hook: Callable[[str, str, str], None] | None) -> None:
        """Call ``hook(machine, old, new)`` after every move of this session's machines; ``None`` stops.

        The lifecycle's moves from now, the core's from the connect on (every
        machine of ``states``). The hook runs inside the machines' step: it must
        be cheap and never raise (engine.observe traces the machines this way).
        One hook at a time: a second call replaces the first.
        """
        self._lifecycle.on_step = hook
        self._supervisor.step_hook = hook
        if self._supervisor.conv is not None:
            self._supervisor.conv.on_step = hook

    @property
    def _conv(self) -> Conversation | None:
        return self._supervisor.conv

    def diagram(self) -> str:
        """Mermaid diagram of the state machines with the current states highlighted."""
        return diagram(self.state, self.phase)

    def usage(self) -> CallUsage:
        """Token usage by modality and cache, per turn and for the session, with its cost (a snapshot).

        The cost comes from the provider profile's price table (``None`` without one).
        """
        return self._usage.usage()

    def statistics(self) -> SessionStatistics:
        """Counters and queue depths, for monitoring (a snapshot)."""
        return SessionStatistics.of(self._dispatcher, self._supervisor.effects)


def _initial_states() -> dict[str, str]:
    """Every core machine's initial state, by name (before the first connect)."""
    return {name: str(spec.initial) for name, spec in CORE_MACHINES.items()}
