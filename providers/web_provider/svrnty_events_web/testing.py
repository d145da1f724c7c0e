"""A headless Chromium driven over the DevTools protocol, for tests of pages that use the SSE
and WebSocket endpoints: the system's ``chromium`` (Debian's package), no browser download,
no driver beyond aiohttp.

    async with Chromium.launch() as browser:
        page = await browser.new_page(url)
        await page.wait_for("document.querySelectorAll('li').length >= 3")
        png = await page.screenshot()

``Chromium.executable()`` is None when no browser is installed; tests skip then.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import tempfile
from contextlib import suppress
from typing import Any

import aiohttp

#: where to look for the browser, after $CHROMIUM
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(Exception):
    """The browser failed to start, or a page script threw."""


class Page:
    """One tab: evaluate scripts, wait for conditions, take screenshots."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser, self.session = browser, session
        #: console messages and uncaught exceptions of the page, for failure reports
        self.log: list[str] = []

    async def send(self, method: str, **params: Any) -> Any:
        return await self.browser.send(method, session=self.session, **params)

    async def navigate(self, url: str, timeout: float = 30.0) -> None:
        loaded = self.browser.expect("Page.loadEventFired", self.session)
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(loaded, timeout)

    async def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` (awaited if it is a promise), as JSON."""
        reply = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True,
                                returnByValue=True)
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression}: {text}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Evaluate ``expression`` until it is truthy (on every animation frame, in the page);
        return its value. Raises TimeoutError with the page's log."""
        script = f"""new Promise((resolve) => {{
            const check = () => {{
                let value; try {{ value = ({expression}); }} catch (e) {{ value = undefined; }}
                if (value) resolve(value); else requestAnimationFrame(check);
            }};
            check();
        }})"""
        try:
            return await asyncio.wait_for(self.evaluate(script), timeout)
        except TimeoutError:
            raise TimeoutError(f"{expression} not true within {timeout}s; page log: "
                               f"{self.log}") from None

    async def screenshot(self) -> bytes:
        """The visible part of the page, as PNG."""
        reply = await self.send("Page.captureScreenshot", format="png")
        return base64.b64decode(reply["data"])


class Chromium:
    """A headless browser process and its DevTools connection."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._waiters: list[tuple[str, str | None, asyncio.Future[Any]]] = []
        self._pages: dict[str, Page] = {}

    @staticmethod
    def executable() -> str | None:
        """The browser binary: ``$CHROMIUM``, or the first of CANDIDATES on PATH."""
        configured = os.environ.get("CHROMIUM")
        if configured:
            return configured
        for name in CANDIDATES:
            found = shutil.which(name)
            if found:
                return found
        return None

    @classmethod
    def launch(cls, *, timeout: float = 60.0) -> _Launch:
        return _Launch(cls(), timeout)

    async def _start(self, timeout: float) -> None:
        binary = self.executable()
        if binary is None:
            raise BrowserError("no chromium found (set $CHROMIUM or install chromium)")
        self._profile = tempfile.TemporaryDirectory(prefix="svrnty-chromium-")
        self._process = await asyncio.create_subprocess_exec(
            binary, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking",
            "--remote-debugging-port=0", f"--user-data-dir={self._profile.name}",
            "--window-size=1100,900", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert self._process.stderr is not None
        url = await asyncio.wait_for(self._devtools_url(self._process.stderr), timeout)
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(url, max_msg_size=0)
        self._reader = asyncio.ensure_future(self._read())

    @staticmethod
    async def _devtools_url(stderr: asyncio.StreamReader) -> str:
        seen = []
        while True:
            line = (await stderr.readline()).decode(errors="replace")
            if not line:
                raise BrowserError("chromium exited before listening: " + "".join(seen[-20:]))
            seen.append(line)
            if "DevTools listening on " in line:
                return line.split("DevTools listening on ", 1)[1].strip()

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                fut = self._replies.pop(data["id"], None)
                if fut is not None and not fut.done():
                    if "error" in data:
                        fut.set_exception(BrowserError(str(data["error"])))
                    else:
                        fut.set_result(data.get("result", {}))
                continue
            method, session = data.get("method"), data.get("sessionId")
            page = self._pages.get(session or "")
            params = data.get("params", {})
            if page is not None and method == "Runtime.consoleAPICalled":
                page.log.append(" ".join(str(a.get("value", a.get("description", "")))
                                         for a in params.get("args", [])))
            elif page is not None and method == "Runtime.exceptionThrown":
                page.log.append(str(params.get("exceptionDetails", {}).get("exception", {})
                                    .get("description")))
            for waiter in list(self._waiters):
                name, want, fut = waiter
                if name == method and (want is None or want == session) and not fut.done():
                    fut.set_result(params)
                    self._waiters.remove(waiter)
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(BrowserError("the browser closed its DevTools connection"))

    def expect(self, method: str, session: str | None = None) -> asyncio.Future[Any]:
        """A future of the next event ``method`` (of ``session``)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append((method, session, fut))
        return fut

    async def send(self, method: str, *, session: str | None = None, **params: Any) -> Any:
        assert self._ws is not None
        call_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[call_id] = fut
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self._ws.send_str(json.dumps(message))
        return await asyncio.wait_for(fut, 30.0)

    async def new_page(self, url: str | None = None) -> Page:
        """A new tab, navigated to ``url`` when given (waits for its load event)."""
        target = await self.send("Target.createTarget", url="about:blank")
        attached = await self.send("Target.attachToTarget", targetId=target["targetId"],
                                   flatten=True)
        page = Page(self, attached["sessionId"])
        self._pages[page.session] = page
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        if url is not None:
            await page.navigate(url)
        return page

    async def close(self) -> None:
        with suppress(Exception):
            if self._ws is not None:
                await asyncio.wait_for(self.send("Browser.close"), 5.0)
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._session is not None:
            await self._session.close()
        if self._process is not None and self._process.returncode is None:
            with suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()
        if self._profile is not None:
            self._profile.cleanup()


class _Launch:
    def __init__(self, browser: Chromium, timeout: float) -> None:
        self.browser, self.timeout = browser, timeout

    async def __aenter__(self) -> Chromium:
        try:
            await self.browser._start(self.timeout)
        except BaseException:
            await self.browser.close()
            raise
        return self.browser

    async def __aexit__(self, *exc: Any) -> None:
        await self.browser.close()
