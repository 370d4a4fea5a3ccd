"""/stats, /retention, /funnel, /invites over a small room's 10 days, driven through the gateway.

Days D1..D10 = 2025-03-03 (Mon) .. 2025-03-12 (Wed), Asia/Shanghai. One FakeClock drives the
bot and the gateway, so every message and join carries the time of the day it belongs to.

Members (bot and the configured bot BOTX excluded):
    id       join  how                     left   active days (messages)
    MANAGER  D1    first seen at login     -      - (asks privately after /use)
    OLD      D1    first seen at login     -      D1 D2 D8
    A        D1    invited by OLD          -      D1(2 messages) D2 D3 D8
    B        D1    invited by OLD          D4     D1 D4
    C        D2    QR code                 -      D2 D4 D9
    D        D3    invited by A            -      D5, D8 (late: sent on D10 with a D8 timestamp)
    E        D3    invited by OLD          D9     D3
    F        D4    unknown channel         -      -
    G        D5    QR code                 -      D5 D6 D10
BOTX talks on D2 (not counted). The gateway is down from D6 22:00 to D7 09:00, so D6 and D7
are incomplete. Messages per day: D1 4, D2 3, D3 2, D4 2, D5 2, D6 1, D7 0, D8 3, D9 1, D10 1.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.clock import FakeClock
from bot.gateway import SandboxGateway, SentMessage, World
from tests.conftest import BOT_ID, MANAGER, ROOM, BotHarness, make_settings

TZ = ZoneInfo("Asia/Shanghai")
DAY1 = date(2025, 3, 3)
OLD, BOTX = "wxid_old", "wxid_helperbot"
A, B, C, D, E, F, G = (f"wxid_t{x}" for x in "abcdefg")
NAMES = {A: "小甲", B: "小乙", C: "小丙", D: "小丁", E: "小戊", F: "小己", G: "小庚"}
SPEC: dict[str, Any] = {
    "self_id": BOT_ID,
    "self_name": "群助手",
    "contacts": {MANAGER: "群主", OLD: "老王", BOTX: "客服机器人", **NAMES},
    "rooms": {ROOM: {"topic": "健身打卡群", "owner": MANAGER, "members": [MANAGER, OLD, BOTX]}},
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def at(day: int, hour: int, minute: int = 0) -> float:
    """Epoch seconds of day `day` (1-based), hh:mm local time."""
    return datetime.combine(DAY1 + timedelta(days=day - 1), time(hour, minute), TZ).timestamp()


async def until(h: BotHarness, cond: Callable[[], object], within: float = 10.0) -> None:
    """Wait (bounded) until the bot has processed the join/leave that `cond` checks."""
    assert h.app is not None
    await h.app.wait_until(lambda: bool(cond()), within)


class Story:
    def __init__(self, h: BotHarness, clock: FakeClock) -> None:
        self.h, self.clock, self.gw = h, clock, h.gw

    async def goto(self, ts: float) -> None:
        assert ts >= self.clock.now()
        await self.clock.advance(ts - self.clock.now())

    async def join(self, day: int, hour: int, ids: list[str], **kw: Any) -> None:
        await self.goto(at(day, hour))
        await self.gw.join(ROOM, [(i, NAMES[i]) for i in ids], **kw)
        await until(self.h, lambda: all(self.h.store.members.get(ROOM, i) for i in ids))

    async def leave(self, day: int, hour: int, member_id: str) -> None:
        await self.goto(at(day, hour))
        await self.gw.leave(ROOM, [member_id])
        await until(self.h, lambda: self.h.store.members.get(ROOM, member_id).left_ts is not None)

    async def talk(self, day: int, hour: int, *senders: str) -> None:
        await self.goto(at(day, hour))
        for s in senders:
            await self.h.say("今天练了腿", by=s)

    async def ask(self, text: str) -> list[SentMessage]:
        """A manager command in the private chat (after /use), so it is not room activity."""
        replies = await self.h.replies_to(text, by=MANAGER, room=None)
        assert replies, f"no reply to {text!r}"
        return replies

    async def text(self, command: str) -> str:
        replies = await self.ask(command)
        assert len(replies) == 1, [r.text for r in replies]
        return replies[0].text

    async def gateway_outage(self, down: float, up: float) -> None:
        await self.goto(down)
        app = self.h.app
        assert app is not None
        await self.gw.stop()
        await until(self.h, lambda: any(o.end_ts is None for o in self.h.store.outages.list()))
        await self.goto(up)
        await self.gw.restart()
        await app.wait_ready()
        await self.h.ctx.outbox.wait_idle()  # "back online" to the manager


async def _play(h: BotHarness, clock: FakeClock) -> Story:
    s = Story(h, clock)
    await h.store.kv.set(f"use:{MANAGER}", ROOM)  # what `/use` stores
    await s.join(1, 10, [A, B], inviter_id=OLD)
    await s.talk(1, 12, OLD, A, A, B)
    await s.join(2, 10, [C], qrcode=True)
    await s.talk(2, 12, OLD, A, C, BOTX)
    await s.join(3, 10, [D], inviter_id=A)
    await s.join(3, 11, [E], inviter_id=OLD)
    await s.talk(3, 12, A, E)
    await s.join(4, 10, [F])
    await s.talk(4, 12, B, C)
    await s.leave(4, 18, B)
    await s.join(5, 10, [G], qrcode=True)
    await s.talk(5, 12, D, G)
    await s.talk(6, 12, G)
    await s.gateway_outage(at(6, 22), at(7, 9))
    await s.talk(8, 12, OLD, A)
    await s.talk(9, 10, C)
    await s.leave(9, 12, E)
    await s.talk(10, 9, G)
    # late history: D's message of D8 arrives on D10; counted on D8, not answered
    await h.silent("补发：周一的打卡", by=D, timestamp=at(8, 20))
    await s.goto(at(10, 15))
    await h.store.flush()
    return s


async def _start(tmp_path: Path, **overrides: Any) -> tuple[BotHarness, FakeClock]:
    clock = FakeClock(at(1, 8))
    gw = SandboxGateway(World.from_spec(SPEC), heartbeat_s=0, clock=clock)
    await gw.start()
    h = BotHarness(gw, make_settings(tmp_path / "data", rooms=[ROOM], bots=[BOTX], **overrides))
    await h.start(clock=clock)
    await h.ctx.outbox.wait_idle()
    return h, clock


@pytest.fixture
async def story(tmp_path: Path) -> AsyncIterator[Story]:
    h, clock = await _start(tmp_path)
    try:
        yield await _play(h, clock)
    finally:
        await h.stop()
        await h.gw.stop()
    assert not h.errors, h.errors


async def test_the_story_is_on_disk_as_intended(story: Story) -> None:
    store = story.h.store
    days = {m: [d - DAY1.toordinal() + 1 for d in ds]
            for m, ds in store.activity.active_days(ROOM).items()}
    assert days == {OLD: [1, 2, 8], A: [1, 2, 3, 8], B: [1, 4], C: [2, 4, 9], D: [5, 8], E: [3],
                    G: [5, 6, 10]}
    msgs = {d - DAY1.toordinal() + 1: n for d, n in store.activity.room_messages(ROOM).items()}
    assert msgs == {1: 4, 2: 3, 3: 2, 4: 2, 5: 2, 6: 1, 8: 3, 9: 1, 10: 1}
    assert store.members.get(ROOM, D).channel == A
    assert store.members.get(ROOM, C).channel == "qrcode"
    assert store.members.get(ROOM, F).channel == "unknown"


async def test_stats_7d_hand_computed(story: Story) -> None:
    text = await story.text("/stats")
    # period D4..D10 (03-06..03-12). Present at the end: MANAGER OLD A C D F G = 7 (B, E left).
    # new: F (D4), G (D5) = 2; left: B (D4), E (D9) = 2; net +0.
    # messages D4..D10: 2+2+1+0+3+1+1 = 10. DAU: 2,2,1,0,3,1,1 -> 10/7 = 1.4.
    # WAU (D4..D10): B C D G OLD A = 6; MAU: OLD A B C D E G = 7; stickiness 1.43/7 = 20%.
    # D1: cohorts whose day+1 is in the period, i.e. joined D3..D9: D E F G; only G (D6) -> 1/4.
    # D7: joined D-3..D3: MANAGER OLD A B C D E = 7; active 7 days later: OLD (D8), A (D8),
    #     C (D9) -> 3/7 = 43%. D30: no cohort observable -> "—".
    # D6 and D7 are incomplete (outage): flagged on every figure that depends on them.
    assert "📊 近7天（03-06~03-12）" in text
    assert "成员 7（+2 / -2，净增 +0）⚠" in text
    assert "消息 10⚠" in text
    assert "日活 1.4⚠ · 周活 6⚠ · 月活 7⚠" in text
    assert "粘性 20%" in text
    assert "留存 次日 25%（4人）⚠ · 7日 43%（7人） · 30日 —" in text
    assert "⚠ 数据不完整（机器人离线）：03-08, 03-09" in text


async def test_stats_30d_hand_computed(story: Story) -> None:
    text = await story.text("/stats 30d")
    # period 02-11..03-12: all 7 joins, 2 leaves, net +5; MANAGER and OLD first seen (BOTX
    # excluded). Messages 19. DAU sum D1..D10 = 3+3+2+2+2+1+0+3+1+1 = 18 -> 18/30 = 0.6.
    # stickiness 0.6/7 = 9%. D1: all 9 cohort members; OLD, A (D2) and G (D6) -> 3/9 = 33%.
    assert "成员 7（+7 / -2，净增 +5）⚠" in text
    assert "首次记录的老成员 2" in text
    assert "消息 19⚠" in text
    assert "日活 0.6⚠ · 周活 6⚠ · 月活 7⚠" in text
    assert "粘性 9%" in text
    assert "次日 33%（9人）⚠" in text and "7日 43%（7人）" in text


async def test_retention_table_and_png_chart(story: Story) -> None:
    replies = await story.ask("/retention")
    assert [r.kind for r in replies] == ["text", "image"]
    text = replies[0].text
    # 4 weeks: 02-17, 02-24 (no joins), 03-03 (Mon..Sun D1..D7: all 9 members), 03-10.
    # Week 0 of the 03-03 cohort: active on/after their join that week: OLD A B C D E G = 7/9
    # = 78%, flagged (D6, D7 in that week); week 1 (03-10..03-16) has not ended: "·".
    assert "📈 周留存（近4周）" in text
    assert "03-03    9 78%⚠ ·" in text
    assert "03-10    0 无新成员" in text
    # Daily cohorts D1 (4), D2 (1), D3 (2), D4 (1), D5 (1), pooled:
    #   D1: 9 observable, retained OLD A (D2) G (D6) = 33%, flagged (G's D6)
    #   D3: 9 observable, retained B (D4) only = 11%, flagged (D's D6, F's D7)
    #   D7: joined <= D3: 7, retained OLD A (D8) C (D9) = 43%, days D1-D3/D8-D10 complete
    assert "日均留存 D1 33%⚠ · D3 11%⚠ · D7 43% · D14 — · D30 —" in text
    assert "03-08, 03-09" in text
    # the chart: a file message whose content is a PNG, also kept under data_dir/charts
    chart = replies[1]
    assert chart.text.endswith(".png")
    png = base64.b64decode(json.loads(chart.data)["base64"])
    assert png.startswith(PNG_MAGIC) and len(png) > 5000
    on_disk = Path(story.h.settings.data_dir) / "charts" / chart.text
    assert on_disk.read_bytes() == png


async def test_funnel_hand_computed(story: Story) -> None:
    text = await story.text("/funnel")
    # 30 days, joins by channel. Matured (join + 7 <= D10): joined D1..D3 = A B C D E.
    #   OLD: A B E; all active within 7 days of joining; on day+7 only A (D8) -> 3 x 1 x 1/3 = 1.0
    #   qrcode: C G; C matured, converted, active D9 = D2+7 -> 2 x 1 x 1 = 2.0
    #   unknown: F, not matured -> conversion and retention unknown
    #   A: D; converted (D5), not active on D10 -> 0%, growth 0.0
    #   total: 7 joins, 5 matured, 5 converted, 2 retained -> 7 x 1 x 0.4 = 2.8
    lines = text.splitlines()
    assert lines[0] == "🔀 渠道增长（近30天）"
    assert lines[1] == "老王：加入 3 · 转化 100% · 7日留存 33% · 增长 1.0⚠"
    assert lines[2] == "扫码：加入 2 · 转化 100% · 7日留存 100% · 增长 2.0⚠"
    assert lines[3] == "未知：加入 1 · 转化 — · 7日留存 — · 增长 —⚠"
    assert lines[4] == "小甲：加入 1 · 转化 100% · 7日留存 0% · 增长 0.0⚠"
    assert lines[5] == "合计：加入 7 · 转化 100% · 7日留存 40% · 增长 2.8⚠"
    assert lines[6].startswith("⚠ 数据不完整")


async def test_invites_hand_computed(story: Story) -> None:
    text = await story.text("/invites")
    # OLD invited A (still there on D8: counted), B (left D4 < D8) and E (left D9 < D10):
    # 1 counted, 2 left early. A invited D (D3, still there on D10): 1 counted.
    # Equal counts: more invitations first, so OLD ranks first.
    assert "🏆 邀请榜（近30天，留满7天计入）" in text
    assert "1. 老王 1人（已退 2）" in text
    assert "2. 小甲 1人" in text
    # the last 7 days (D4..D10) saw only F (no inviter) and G (QR code)
    assert "本期没有邀请记录。" in await story.text("/invites 7")


async def test_in_room_command_mentions_the_manager_and_counts_as_activity(story: Story) -> None:
    reply = await story.h.ask("/stats", by=MANAGER)
    assert reply.mention_ids == (MANAGER,)
    # the manager's own message is activity on D10: DAU D10 = 2 -> 11/7 = 1.6, WAU 7, MAU 8
    assert "日活 1.6⚠ · 周活 7⚠ · 月活 8⚠" in reply.text


@pytest.fixture
async def fresh(tmp_path: Path) -> AsyncIterator[Story]:
    """A bot on day 1 with nothing happened yet (for argument checks)."""
    h, clock = await _start(tmp_path)
    await h.store.kv.set(f"use:{MANAGER}", ROOM)
    try:
        yield Story(h, clock)
    finally:
        await h.stop()
        await h.gw.stop()
    assert not h.errors, h.errors


async def test_bad_arguments_get_the_usage_and_members_are_refused(fresh: Story) -> None:
    for command in ["/stats 8d", "/stats abc", "/stats 30 days", "/retention 0", "/retention 27",
                    "/funnel -1", "/funnel 366", "/invites x", "/invites 9" * 300]:
        text = await fresh.text(command)
        assert "用法：/" + command.split()[0][1:] in text, (command, text)
    for command in ["/stats 90天", "/stats ９０ｄ", "/retention 2周", "/funnel 7d", "/invites 7"]:
        assert "用法" not in (await fresh.ask(command))[0].text
    assert "管理员命令" in (await fresh.h.ask("/stats", by=OLD)).text


async def test_english_replies(tmp_path: Path) -> None:
    h, clock = await _start(tmp_path, language="en")
    try:
        s = Story(h, clock)
        await h.store.kv.set(f"use:{MANAGER}", ROOM)
        await s.join(1, 10, [A], inviter_id=OLD)
        await s.talk(1, 12, A)
        text = await s.text("/stats")
        assert "Members 3 (+1 / -0, net +1)" in text and "Messages 1" in text
    finally:
        await h.stop()
        await h.gw.stop()
    assert not h.errors, h.errors


async def test_bot_stopped_across_midnight_flags_the_days(tmp_path: Path) -> None:
    h, clock = await _start(tmp_path)
    try:
        s = Story(h, clock)
        await h.store.kv.set(f"use:{MANAGER}", ROOM)
        await s.talk(1, 12, OLD)
        await s.goto(at(1, 23))
        await h.stop()  # the bot process is stopped from D1 23:00 until D3 08:00
        await clock.advance(at(3, 8) - clock.now())
        await h.start(clock=clock)
        await h.ctx.outbox.wait_idle()
        await s.talk(3, 9, OLD)
        text = await s.text("/stats")
        assert "03-03, 03-04, 03-05" in text  # D1, D2 and D3 are incomplete
    finally:
        await h.stop()
        await h.gw.stop()
    assert not h.errors, h.errors
