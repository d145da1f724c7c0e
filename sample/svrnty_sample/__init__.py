"""The svrnty-events sample host: users and invitations as workflows, served over HTTP and gRPC."""

__version__ = "0.1.0"
