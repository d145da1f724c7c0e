"""The store's Lua scripts, one per file in ``lua/`` (see the README for the key layout).

Every script is prepended with ``lua/common.lua`` (shared helpers); the scripts of one delivery
group also with ``lua/group.lua``, which names their common keys and first arguments, and
the scripts that trim with ``lua/retention.lua``. Each
multi-key step of the store runs as one script (atomic, EVALSHA)."""

from __future__ import annotations

from functools import cache
from importlib import resources

#: scripts that act on one delivery group (see group.lua for their keys and first arguments)
GROUP_SCRIPTS = ("claim", "ensure_group", "delete_group", "ack", "ack_processed", "nack",
                 "release", "extend", "dead_letter")
OTHER_SCRIPTS = ("append", "trim_ephemeral", "create_subscription", "settle_dead", "receipts",
                 "leases", "schedules_claim", "schedules_complete", "checkpoint")


@cache
def _text(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")


def source(name: str) -> str:
    """The full text of script ``name``, helpers included."""
    parts = [_text("common")]
    if name in GROUP_SCRIPTS:
        parts.append(_text("group"))
    if name in ("append", "trim_ephemeral"):
        parts.append(_text("retention"))
    parts.append(_text(name))
    return "\n".join(parts)
