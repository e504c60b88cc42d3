"""Coordination primitives on JetStream KV (typed store, locks, leader election, ...).

Reached from a connected client (``client.kv(...)``, ``client.lock(...)``); every primitive
runs on both brokers, because the memory broker's KV has the same revision semantics.
"""

from __future__ import annotations
