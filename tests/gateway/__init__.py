"""Tests of the call gateway: carrier dialects, mark ledger, the simulated carrier, the bridge."""
