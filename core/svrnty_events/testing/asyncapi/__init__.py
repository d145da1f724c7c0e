"""Validate an AsyncAPI 3.0 document against the official JSON Schema of the specification.

``asyncapi-3.0.0.schema.json`` is ``schemas/3.0.0-without-$id.json`` of the npm package
``@asyncapi/specs`` 6.11.1 (Apache License 2.0, see LICENSE and NOTICE beside it), unchanged.
It is a draft-07 schema; validating needs the ``jsonschema`` package (a test dependency)::

    from svrnty_events.testing.asyncapi import validate_asyncapi

    validate_asyncapi(document)   # raises AsyncAPIError naming each place that is wrong
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

#: where the vendored schema comes from
SOURCE = "@asyncapi/specs 6.11.1, schemas/3.0.0-without-$id.json"
SCHEMA_FILE = "asyncapi-3.0.0.schema.json"


class AsyncAPIError(AssertionError):
    """The document does not follow the AsyncAPI 3.0.0 schema; ``errors`` lists each
    violation as ``path: message``."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("not a valid AsyncAPI 3.0.0 document:\n  " + "\n  ".join(errors))


@cache
def schema() -> dict[str, Any]:
    """The official AsyncAPI 3.0.0 JSON Schema."""
    text = resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def validate_asyncapi(document: dict[str, Any]) -> None:
    """Raise AsyncAPIError unless ``document`` is valid AsyncAPI 3.0.0."""
    import jsonschema

    validator = jsonschema.Draft7Validator(schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        raise AsyncAPIError([
            f"{'/'.join(map(str, e.absolute_path)) or '(document)'}: {e.message}"
            for e in errors][:20])
