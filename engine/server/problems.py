"""The ``error`` events the server sends, in one place, with the codes real servers use.

Every error is ``invalid_request_error`` unless said otherwise and carries the
``event_id`` of the client event that caused it (when it had one), so a client
can tie the failure to its request. None of them closes the connection.
Codes marked (OpenAI) are ones seen from OpenAI or Inworld (docs/protocol.md §10,
docs/peers.md §2.1); the rest are this server's own, named in the same style.
"""

from __future__ import annotations

from engine.protocol import server as s
from engine.protocol.items import ErrorDetail

INVALID_REQUEST = "invalid_request_error"

INVALID_JSON = "invalid_json"
INVALID_VALUE = "invalid_value"  # (OpenAI/Inworld) bad value; also unknown event types, with param "type"
UNKNOWN_PARAMETER = "unknown_parameter"  # (OpenAI)
COMMIT_EMPTY = "input_audio_buffer_commit_empty"  # (OpenAI)
CANCEL_NOT_ACTIVE = "response_cancel_not_active"  # (OpenAI/Inworld)
ALREADY_ACTIVE = "conversation_already_has_active_response"  # (OpenAI/Inworld)
RETRIEVE_INVALID_ID = "item_retrieve_invalid_item_id"  # (OpenAI)
DELETE_INVALID_ID = "item_delete_invalid_item_id"
TRUNCATE_INVALID_ID = "item_truncate_invalid_item_id"
CREATE_INVALID_PREVIOUS = "item_create_invalid_previous_item_id"
DUPLICATE_ITEM_ID = "item_create_duplicate_item_id"


def error(
    code: str | None,
    message: str,
    *,
    param: str | None = None,
    event_id: str | None = None,
    type: str = INVALID_REQUEST,
) -> s.ErrorEvent:
    """An ``error`` event (without its own ``event_id``; the session stamps one)."""
    detail = ErrorDetail(type=type, code=code, message=message, param=param, event_id=event_id)
    return s.ErrorEvent(error=detail)
