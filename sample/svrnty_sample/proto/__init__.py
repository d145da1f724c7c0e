"""Generated gRPC code of protos/svrnty/sample/v1/commands.proto (sample/generate_proto.py)."""
