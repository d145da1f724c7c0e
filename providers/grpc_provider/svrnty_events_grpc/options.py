"""Options of the ``grpc`` delivery provider (``[delivery.grpc]`` in TOML)."""

from __future__ import annotations

import msgspec

MIB = 1024 * 1024


class GrpcOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Validated options of the gRPC delivery provider."""

    #: interface to bind; the default accepts local connections only
    host: str = "127.0.0.1"
    #: port to bind; 0 picks a free port (read it from ``provider.port`` or the banner)
    port: int = 6000
    #: PEM certificate chain and private key paths: both set = TLS
    tls_cert: str | None = None
    tls_key: str | None = None
    #: accepted bearer tokens (``authorization: Bearer TOKEN``); none = no auth
    tokens: list[str] = []
    #: environment variable holding more accepted tokens, comma-separated
    token_env: str | None = None
    #: largest message received or sent; larger requests fail with RESOURCE_EXHAUSTED
    max_message_bytes: int = 4 * MIB
    #: most events per message sent to a consumer
    max_batch: int = 256
    #: serve grpc.reflection (open, no token needed)
    reflection: bool = True
    #: serve grpc.health.v1 (open, no token needed)
    health: bool = True
    #: most seconds a graceful stop waits for each remote consumer to settle what it was sent
    #: (``draining``); the wait is also at most half the stop's grace. 0: no drain
    drain_timeout: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("port: must be between 0 and 65535")
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            raise ValueError(f"{missing}: required when "
                             f"{'tls_cert' if missing == 'tls_key' else 'tls_key'} is set")
        if self.max_message_bytes < 64 * 1024:
            raise ValueError("max_message_bytes: must be >= 65536")
        if self.max_batch < 1:
            raise ValueError("max_batch: must be >= 1")
        if not 0 <= self.drain_timeout < float("inf"):
            raise ValueError("drain_timeout: must be a finite number of seconds >= 0")
        for i, token in enumerate(self.tokens):
            if not token or token.strip() != token:
                raise ValueError(f"tokens[{i}]: must be non-empty, without surrounding spaces")
