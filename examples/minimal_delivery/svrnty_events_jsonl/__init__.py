"""A minimal svrnty-events delivery plugin: appends each event to a JSON Lines file."""

from .options import JsonlOptions
from .provider import JsonlDelivery

__all__ = ["JsonlDelivery", "JsonlOptions"]
