"""Code generated from protos/svrnty/events/v1/events.proto (see generate_proto.py)."""
