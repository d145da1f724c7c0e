"""Options of the ``jsonl`` delivery provider (``[delivery.jsonl]`` in TOML)."""

import msgspec


class JsonlOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: the file events are appended to, one JSON object per line
    path: str
    #: names of the subscriptions whose events are written
    subscriptions: list[str]

    def __post_init__(self) -> None:
        if not self.subscriptions:
            raise ValueError("subscriptions: name at least one subscription")
