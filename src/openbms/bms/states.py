"""The BMS states of docs/behaviour.md §5, as small integers so a batch of packs holds them in one array."""

from __future__ import annotations

STATES = ("off", "sleep", "normal", "protected", "latched", "locked", "unresponsive")
OFF, SLEEP, NORMAL, PROTECTED, LATCHED, LOCKED, UNRESPONSIVE = range(len(STATES))
