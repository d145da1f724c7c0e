"""Generated gRPC code of protos/svrnty/sample/v1/commands.proto (scripts/generate_protos.py)."""
