"""The ``jsonl`` plugin: registers the delivery provider."""

from svrnty_events import hookimpl
from svrnty_events.hookspecs import Register

from .options import JsonlOptions
from .provider import JsonlDelivery


@hookimpl
def register_delivery_providers(register: Register) -> None:
    register("jsonl", JsonlDelivery, options=JsonlOptions)
