"""A TCP proxy in front of a PostgreSQL server that can lose a reply: once armed, the first
query whose bytes hold every marker runs on the server as usual, and the proxy keeps its
whole reply, up to and including ReadyForQuery (the server has committed by then), from the
client and closes that connection: a claim that committed but whose reply never arrived."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Sequence


class ReplyLosingProxy:
    def __init__(self, port: int) -> None:
        self.port = port
        self.listen_port = 0
        self._server: asyncio.Server | None = None
        self._markers: tuple[bytes, ...] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: what the lost reply held: its DataRow messages, and whether it was an error
        self.lost_rows = 0
        self.lost_error = False
        self.lost = asyncio.Event()

    def lose_reply_of(self, markers: Sequence[bytes]) -> None:
        self._markers = tuple(markers)

    def url(self, server_url: str) -> str:
        return server_url.replace(f":{self.port}/", f":{self.listen_port}/")

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.listen_port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            client_w.close()
            self._tasks.discard(task)
            return
        armed = asyncio.Event()

        async def up() -> None:  # client -> server
            while data := await client_r.read(65536):
                markers = self._markers
                if markers is not None and all(m in data for m in markers):
                    self._markers = None
                    armed.set()  # from here on the server's bytes are this query's reply
                server_w.write(data)
                await server_w.drain()

        async def down() -> None:  # server -> client
            kept, at = b"", 0
            while data := await server_r.read(65536):
                if not armed.is_set():
                    client_w.write(data)
                    await client_w.drain()
                    continue
                kept += data
                while len(kept) - at >= 5:  # messages: type byte, int32 length (itself incl.)
                    kind = kept[at:at + 1]
                    size = struct.unpack("!i", kept[at + 1:at + 5])[0]
                    if len(kept) - at < 1 + size:
                        break
                    if kind == b"D":
                        self.lost_rows += 1
                    elif kind == b"E":
                        self.lost_error = True
                    elif kind == b"Z":  # ReadyForQuery: the query is over, committed
                        self.lost.set()
                        return
                    at += 1 + size

        pumps = [asyncio.ensure_future(up()), asyncio.ensure_future(down())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_w, server_w):
                with contextlib.suppress(Exception):
                    writer.close()
            self._tasks.discard(task)


@contextlib.asynccontextmanager
async def reply_losing_proxy(port: int) -> AsyncIterator[ReplyLosingProxy]:
    proxy = ReplyLosingProxy(port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
