"""Provider profiles: what a realtime provider can do, declared in one place.

The core and the providers consult a profile instead of branching on the
provider's name, so supporting a third OpenAI-compatible service is one new
``Profile`` (plus its tests). Facts are from protocol.md (§1, §2, §4, §7).
"""

from __future__ import annotations

import attrs

from engine.core.conversation import CoreOptions
from engine.protocol.config import PCM_RATES, ConfigError, SessionConfig


@attrs.frozen(kw_only=True)
class Profile:
    """Capabilities and conventions of one provider.

    Attributes:
        name: short provider name.
        auth_schemes: ``Authorization`` schemes the service accepts.
        required_query: query parameters every connection must carry.
        model_in_url: the model is chosen at connect time in the URL (not by ``session.update``).
        dialect: event and field names spoken (``"ga"``: OpenAI Realtime GA names).
        supports_truncation: ``conversation.item.truncate``/``delete`` exist.
        server_continues_after_tools: the server starts the follow-up response after tool
            outputs by itself (Inworld's ``auto_tool_response``; we turn it off and answer).
        voice_locked_after_audio: a voice change is refused once audio exists.
        modality_combinations: accepted ``output_modalities`` values.
        sample_rates: accepted PCM rates.
        keepalive_events: server events that only keep the socket alive.
        extensions: session fields beyond GA the service accepts.
    """

    name: str
    auth_schemes: tuple[str, ...]
    required_query: tuple[str, ...]
    model_in_url: bool
    dialect: str = "ga"
    supports_truncation: bool = True
    server_continues_after_tools: bool = False
    voice_locked_after_audio: bool = True
    modality_combinations: tuple[tuple[str, ...], ...] = (("audio",), ("text",))
    sample_rates: tuple[int, ...] = (24000,)
    keepalive_events: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()

    def core_options(self) -> CoreOptions:
        """The protocol facts the pure core needs."""
        return CoreOptions(
            voice_locked_after_audio=self.voice_locked_after_audio,
            server_continues_after_tools=self.server_continues_after_tools,
            supports_truncation=self.supports_truncation,
        )

    def check(self, config: SessionConfig) -> None:
        """Refuse a configuration the service would reject, naming the field."""
        if tuple(config.output_modalities) not in self.modality_combinations:
            allowed = " or ".join(repr(list(m)) for m in self.modality_combinations)
            raise ConfigError("output_modalities", f"{self.name} accepts {allowed}")
        for field, fmt in (("input_format", config.input_format), ("output_format", config.output_format)):
            if fmt.type == "audio/pcm" and fmt.rate not in self.sample_rates:
                raise ConfigError(f"{field}.rate", f"{self.name} accepts PCM at {self.sample_rates} Hz")


INWORLD = Profile(
    name="inworld",
    auth_schemes=("Basic", "Bearer"),
    required_query=("key", "protocol"),
    model_in_url=False,
    # Inworld documents conversation.item.truncate (protocol.md §2), though pipecat never sends it.
    supports_truncation=True,
    server_continues_after_tools=False,  # we send providerData.auto_tool_response = false
    voice_locked_after_audio=False,  # partial updates may change the voice mid-session
    modality_combinations=(("audio",), ("text",), ("audio", "text"), ("text", "audio")),
    sample_rates=PCM_RATES,
    keepalive_events=("ping",),
    extensions=("temperature", "audio.output.model", "providerData"),
)

OPENAI = Profile(
    name="openai",
    auth_schemes=("Bearer",),
    required_query=("model",),
    model_in_url=True,
    supports_truncation=True,
    server_continues_after_tools=False,
    voice_locked_after_audio=True,  # "cannot update a conversation's voice if assistant audio is present"
    modality_combinations=(("audio",), ("text",)),
    sample_rates=(24000,),
)
