"""`qunbot run`: gateway (sandbox mode), bot, console; until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from bot.config import Settings

log = logging.getLogger("qunbot")

DEMO_MEMBERS = {
    "wxid_xiaoming": "小明",
    "wxid_xiaohong": "小红",
    "wxid_aqiang": "阿强",
    "wxid_lily": "Lily",
}


def sandbox_world_spec(settings: Settings) -> dict[str, Any]:
    """The simulated world: bot.yaml's `sandbox` section, or a small demo built from `rooms`."""
    sb = settings.sandbox
    rooms: dict[str, Any] = {
        rid: {"topic": r.topic, "owner": r.owner, "members": dict(r.members)}
        for rid, r in sb.rooms.items()
    }
    if not rooms:
        for i, room in enumerate(settings.rooms, 1):
            rid = room.id or f"sandbox{i}@chatroom"
            members = dict(DEMO_MEMBERS)
            members.update({a: f"管理员{n}" for n, a in enumerate(settings.admins, 1)})
            rooms[rid] = {
                "topic": room.topic or f"示例群{i}",
                "owner": settings.admins[0] if settings.admins else "",
                "members": members,
            }
    return {"self_id": sb.self_id, "self_name": sb.self_name, "rooms": rooms}


async def run_bot(
    settings: Settings,
    *,
    scenario: str | None = None,
    install_signals: Callable[[asyncio.Event], None] | None = None,
) -> int:
    from bot.app import App

    gateway: Any = None
    endpoint = settings.puppet.endpoint
    if scenario:
        from scenarios import apply_scenario

        if settings.puppet.mode != "sandbox":
            raise ValueError(
                "--scenario loads a playbook into the sandbox; use puppet.mode: sandbox"
            )
        settings = apply_scenario(settings, scenario)
    if settings.puppet.mode == "sandbox":
        from bot.gateway import SandboxGateway, World

        gateway = SandboxGateway(World.from_spec(sandbox_world_spec(settings)))
        await gateway.start(port=settings.sandbox.port)
        endpoint = gateway.endpoint
        print(
            f"sandbox gateway listening on {endpoint} (puppet-service gRPC, loopback only)",
            flush=True,
        )
    app = App(settings, endpoint=endpoint)
    app.gateway = gateway
    stop = asyncio.Event()
    if install_signals:
        install_signals(stop)
    await app.start()
    if scenario and gateway is not None:
        from scenarios import load, run_setup

        await app.wait_ready()
        done = await run_setup(app, gateway, load(scenario))
        print(f"scenario {scenario}: {len(done)} setup replies", flush=True)
    console = None
    if settings.web.enabled:
        try:
            from bot.web import start_console

            console = await start_console(app, gateway)
            print(f"web console: {console.url}", flush=True)
        except ImportError:
            pass
        except OSError as e:
            log.warning("web console not started (%s); the bot runs without it", e)
    print(f"qunbot running ({settings.puppet.mode} mode); press Ctrl+C to stop", flush=True)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        if console is not None:
            await console.stop()
        await app.stop()
        if gateway is not None:
            await gateway.stop()
    return 0
