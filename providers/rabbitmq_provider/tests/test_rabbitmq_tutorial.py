"""The README's tutorial, run as written: two services in two processes, a real broker."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path

from svrnty_events.testing import within

TUTORIAL = Path(__file__).resolve().parent.parent / "tutorial"
TIMEOUT = 120.0


async def start(script: str, *args: str, cwd: Path, url: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(TUTORIAL / script), *args, cwd=cwd,
        env={**os.environ, "RABBITMQ_URL": url}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)


async def lines_until(proc: asyncio.subprocess.Process, pattern: str, count: int,
                      seen: list[str]) -> list[re.Match[str]]:
    found: list[re.Match[str]] = []
    while len(found) < count:
        raw = await proc.stdout.readline()
        if not raw:
            raise AssertionError(f"exited ({await proc.wait()}) after:\n" + "".join(seen))
        line = raw.decode()
        seen.append(line)
        if m := re.match(pattern, line):
            found.append(m)
    return found


async def test_orders_placed_in_service_a_are_billed_by_service_b(rabbitmq, tmp_path: Path):
    work_a, work_b = tmp_path / "a", tmp_path / "b"
    work_a.mkdir()
    work_b.mkdir()
    billing = await start("billing_service.py", "5", cwd=work_b, url=rabbitmq.url)
    out_b: list[str] = []
    out_a: list[str] = []
    try:
        await within(lines_until(billing, "billing is listening", 1, out_b), TIMEOUT)
        orders = await start("orders_service.py", "5", cwd=work_a, url=rabbitmq.url)
        placed = await within(lines_until(orders, r"placed order (\d+) in workflow (\S+)", 5,
                                          out_a), TIMEOUT)
        await within(lines_until(orders, "all orders published", 1, out_a), TIMEOUT)
        assert await within(orders.wait(), TIMEOUT) == 0, "".join(out_a)
        billed = await within(lines_until(
            billing, r"billing order (\d+): ([\d.]+) \(workflow (\S+), event (\S+)\)", 5,
            out_b), TIMEOUT)
        assert await within(billing.wait(), TIMEOUT) == 0, "".join(out_b)
    finally:
        if billing.returncode is None:
            billing.kill()
            await billing.wait()
    assert [(m[1], m[2]) for m in placed] == [(str(n), m[3]) for n, m in
                                              zip(range(1, 6), billed)]
    assert [m[2] for m in billed] == [f"{10.0 * n:.2f}" for n in range(1, 6)]
    assert len({m[4] for m in billed}) == 5
    assert (work_a / "orders.db").exists() and (work_b / "billing.db").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)
