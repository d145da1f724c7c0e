"""Catch-up and event-sourced state live in the kernel (:mod:`svrnty_events.replay`), since they
work on any store; kept importable from here."""

from svrnty_events.replay import Rebuilt, Snapshot, SnapshotStore, iter_events, rebuild, sequence_at

__all__ = ["Rebuilt", "Snapshot", "SnapshotStore", "iter_events", "rebuild", "sequence_at"]
