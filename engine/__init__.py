"""engine: voice agents on realtime speech-to-speech WebSocket APIs, under trio or asyncio."""

from __future__ import annotations
