"""The event registries cover exactly the GA unions (plus Inworld's ``ping``)."""

from __future__ import annotations

import attrs
import pytest
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent

from engine.protocol import CLIENT_EVENTS, SERVER_EVENTS
from tests.protocol.ga_oracle import ga_members, ga_types


def test_ga_unions_have_the_documented_sizes() -> None:
    """The oracle reads 11 client and 46 server members, with distinct type literals."""
    assert len(ga_members(RealtimeClientEvent)) == len(ga_types(RealtimeClientEvent)) == 11
    assert len(ga_members(RealtimeServerEvent)) == len(ga_types(RealtimeServerEvent)) == 46


def test_client_registry_equals_ga_client_union() -> None:
    """CLIENT_EVENTS is keyed by exactly the GA client event types."""
    assert set(CLIENT_EVENTS) == ga_types(RealtimeClientEvent)


def test_server_registry_equals_ga_server_union_plus_ping() -> None:
    """SERVER_EVENTS is keyed by the 46 GA server event types and ``ping``."""
    assert set(SERVER_EVENTS) == ga_types(RealtimeServerEvent) | {"ping"}
    assert len(SERVER_EVENTS) == 47


@pytest.mark.parametrize("registry", [CLIENT_EVENTS, SERVER_EVENTS], ids=["client", "server"])
def test_registry_keys_match_class_type(registry: dict[str, type]) -> None:
    """Each class is registered under its own ``TYPE``, once, and is a frozen attrs class."""
    for key, cls in registry.items():
        assert key == cls.TYPE  # type: ignore[attr-defined]
        assert attrs.has(cls)
        assert attrs.fields_dict(cls)  # every event has at least event_id
    assert len(set(registry.values())) == len(registry)


def test_client_and_server_types_are_disjoint() -> None:
    """No wire type names both a client and a server event."""
    assert not set(CLIENT_EVENTS) & set(SERVER_EVENTS)
