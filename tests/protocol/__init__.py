"""Tests of the wire layer (engine.protocol)."""
