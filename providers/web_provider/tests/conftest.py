"""Fixtures: a real host with the web provider on 127.0.0.1 port 0, and an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from web_testkit import TIMEOUT, running


@pytest.fixture
async def host() -> AsyncIterator[Any]:
    async with running() as h:
        yield h


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None,
                                                                   sock_read=TIMEOUT)) as s:
        yield s
