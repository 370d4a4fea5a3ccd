"""Every playbook in scenarios/ replayed through the sandbox gateway, as `qunbot run --scenario` loads it."""

from __future__ import annotations

from pathlib import Path

import pytest

import scenarios
from bot.gateway import SandboxGateway, World
from bot.runner import sandbox_world_spec
from tests.conftest import BotHarness, make_settings


@pytest.mark.parametrize("name", scenarios.names())
async def test_playbook_conversation(name: str, tmp_path: Path) -> None:
    sc = scenarios.load(name)
    settings = scenarios.apply_scenario(make_settings(tmp_path / "data", rooms=[]), name)
    gateway = SandboxGateway(World.from_spec(sandbox_world_spec(settings)))
    await gateway.start()
    bot = BotHarness(gateway, settings)
    try:
        app = await bot.start()
        setup_replies = await scenarios.run_setup(app, gateway, sc)
        assert len(setup_replies) >= len(sc.setup), "every setup command is acknowledged"
        assert not [r for r in setup_replies if "用法" in r or "出错" in r], setup_replies
        for step in sc.conversation:
            room = None if step.private else sc.room_id
            replies = [m.text for m in await bot.replies_to(step.say, by=step.by, room=room)]
            if step.expect_silence:
                assert replies == [], f"{name}: {step.say!r} should get no reply, got {replies}"
                continue
            assert len(replies) == step.replies, f"{name}: {step.say!r} → {replies}"
            said = "\n".join(replies)
            for fragment in step.expect:
                assert fragment in said, f"{name}: {step.say!r} → {said!r} lacks {fragment!r}"
        # the setup ran once: a restart does not repeat it
        await bot.restart()
        assert await scenarios.run_setup(bot.app, gateway, sc) == []
    finally:
        await bot.stop()
        await gateway.stop()
    assert not bot.errors, bot.errors


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="available: education, fitness, health, retail"):
        scenarios.load("bakery")
