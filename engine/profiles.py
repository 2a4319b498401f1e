"""Provider profiles: what a realtime provider can do, declared in one place.

The core and the providers consult a profile instead of branching on the
provider's name, so supporting a third OpenAI-compatible service is one new
``Profile`` (plus its tests). Facts are from docs/protocol.md (§1, §2, §4, §12).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from engine.core.metrics import Prices
from engine.protocol.config import PCM_RATES, ConfigError, SessionConfig
from engine.protocol.fields import McpTool, McpToolChoice

if TYPE_CHECKING:
    from engine.core.conversation import CoreOptions


@attrs.frozen(kw_only=True)
class Profile:
    """Capabilities and conventions of one provider.

    Attributes:
        name: short provider name.
        auth_schemes: ``Authorization`` schemes the service accepts (the first is the default).
        supports_truncation: ``conversation.item.truncate``/``delete`` exist.
        server_continues_after_tools: the server starts the follow-up response after tool
            outputs by itself (Inworld's ``auto_tool_response``; we turn it off and answer).
        voice_locked_after_audio: a voice change is refused once audio exists.
        modality_combinations: accepted ``output_modalities`` values.
        sample_rates: accepted PCM rates.
        extensions: session fields beyond GA the service accepts (wire names); others are not sent.
        features: GA features beyond the core set the service accepts (``GA_FEATURES``);
            a config using another is refused locally by :meth:`check`, never by the
            server mid-call.
        server_close_reconnects: a close the server starts, clean (1000, 1001) or not, is
            reconnected and the conversation restored (subject to the reconnect policy's
            storm protection). A server-side session expiry or restart is not the
            caller hanging up, and a call must not go silent because the server closed
            politely. ``False``: a clean close by the server ends the session.
        prices: what the service charges per million tokens (``TurnMetrics.cost``, the call
            span's cost); ``None`` leaves costs unset. Override with ``attrs.evolve(profile, prices=...)``.
    """

    name: str
    auth_schemes: tuple[str, ...]
    supports_truncation: bool = True
    server_continues_after_tools: bool = False
    voice_locked_after_audio: bool = True
    modality_combinations: tuple[tuple[str, ...], ...] = (("audio",), ("text",))
    sample_rates: tuple[int, ...] = (24000,)
    extensions: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    server_close_reconnects: bool = True
    prices: Prices | None = None

    def core_options(self) -> CoreOptions:
        """The protocol facts the pure core needs."""
        from engine.core.conversation import CoreOptions  # the core loads on first use

        return CoreOptions(
            voice_locked_after_audio=self.voice_locked_after_audio,
            server_continues_after_tools=self.server_continues_after_tools,
            supports_truncation=self.supports_truncation,
            prices=self.prices,
        )

    def without_extensions(self, config: SessionConfig) -> SessionConfig:
        """``config`` without the extension fields this service does not accept."""
        dropped: dict[str, Any] = {
            attr: None for wire, attr in _EXTENSION_FIELDS.items() if wire not in self.extensions
        }
        return attrs.evolve(config, **dropped)

    def check(self, config: SessionConfig) -> None:
        """Refuse a configuration the service would reject, naming the field."""
        if tuple(config.output_modalities) not in self.modality_combinations:
            allowed = " or ".join(repr(list(m)) for m in self.modality_combinations)
            raise ConfigError("output_modalities", f"{self.name} accepts {allowed}")
        for field, fmt in (("input_format", config.input_format), ("output_format", config.output_format)):
            if fmt.type == "audio/pcm" and fmt.rate not in self.sample_rates:
                raise ConfigError(f"{field}.rate", f"{self.name} accepts PCM at {self.sample_rates} Hz")
        for feature, param in _used_features(config):
            if feature not in self.features:
                raise ConfigError(param, f"{self.name} does not support {feature.replace('_', ' ')}")

    def check_feature(self, feature: str, param: str) -> None:
        """Refuse a GA feature (``image_input``...) this service does not accept, naming ``param``."""
        if feature not in self.features:
            raise ConfigError(param, f"{self.name} does not support {feature.replace('_', ' ')}")


GA_FEATURES = (
    "noise_reduction",
    "reasoning",
    "truncation",
    "prompt",
    "include",
    "mcp_tools",
    "tool_choice",
    "image_input",
    "out_of_band_responses",
)
"""GA features a profile may declare in ``features`` (docs/protocol.md §4.5)."""


def _used_features(config: SessionConfig) -> list[tuple[str, str]]:
    """The GA features ``config`` uses, each with the field that uses it."""
    used = [
        (feature, feature)
        for feature in ("noise_reduction", "reasoning", "truncation", "prompt")
        if getattr(config, feature) is not None
    ]
    if config.include:
        used.append(("include", "include"))
    if any(isinstance(t, McpTool) for t in config.tools):
        used.append(("mcp_tools", "tools"))
    if config.tool_choice is not None:
        used.append(("tool_choice", "tool_choice"))
    if isinstance(config.tool_choice, McpToolChoice):
        used.append(("mcp_tools", "tool_choice"))
    return used


_EXTENSION_FIELDS = {
    "temperature": "temperature",
    "audio.output.model": "tts_model",
    "providerData": "provider_data",
}
"""Session fields beyond GA: wire name -> ``SessionConfig`` attribute."""

INWORLD = Profile(
    name="inworld",
    auth_schemes=("Basic", "Bearer"),
    # Inworld documents conversation.item.truncate (docs/protocol.md §2), though pipecat never sends it.
    supports_truncation=True,
    server_continues_after_tools=False,  # we send providerData.auto_tool_response = false
    voice_locked_after_audio=False,  # partial updates may change the voice mid-session
    modality_combinations=(("audio",), ("text",), ("audio", "text"), ("text", "audio")),
    sample_rates=PCM_RATES,
    extensions=("temperature", "audio.output.model", "providerData"),
    # Inworld documents tool_choice but none of GA's newer fields (docs/protocol.md §4.5).
    features=("tool_choice",),
    server_close_reconnects=True,  # the server ends sessions on its own (expiry, restarts)
)

OPENAI = Profile(
    name="openai",
    auth_schemes=("Bearer",),
    supports_truncation=True,
    server_continues_after_tools=False,
    voice_locked_after_audio=True,  # "cannot update a conversation's voice if assistant audio is present"
    modality_combinations=(("audio",), ("text",)),
    sample_rates=(24000,),
    features=GA_FEATURES,
    server_close_reconnects=True,  # sessions have a maximum duration; the call goes on past it
    # gpt-realtime's published prices (USD per million tokens, 2025); override for other models.
    prices=Prices(
        input_text=4.0,
        input_audio=32.0,
        input_image=5.0,
        cached_text=0.4,
        cached_audio=0.4,
        cached_image=0.5,
        output_text=16.0,
        output_audio=64.0,
    ),
)
