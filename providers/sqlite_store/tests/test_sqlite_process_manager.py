"""A process manager host SIGKILLed at random points over 1,000 workflows: every follow-up
command is sent exactly once (its event counted once per workflow in the store), however
many times a handler ran again after a crash."""

from __future__ import annotations

from svrnty_events.testing.process_manager_host import sigkill_rounds

WORKFLOWS = 1000


async def test_follow_up_commands_sent_exactly_once_across_sigkills(tmp_path):
    options = {"path": str(tmp_path / "pm.db"), "synchronous": "normal"}
    outcome = await sigkill_rounds("sqlite", options, WORKFLOWS, tmp_path)
    outcome.check_every_follow_up_sent_once("sqlite", WORKFLOWS)
