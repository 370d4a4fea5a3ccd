"""FAQ conversations over the sandbox gateway (SPEC section 4, `/faq` of section 3)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.clock import FakeClock
from bot.config import Settings
from storage.faq import GLOBAL, FaqRepo
from tests.conftest import (
    AQIANG,
    LILY,
    MANAGER,
    ROOM,
    ROOM2,
    XIAOHONG,
    XIAOMING,
    BotHarness,
    make_settings,
)

HOURS = "营业时间; 几点开门; 周末开门吗 | 每天 6:00-23:00 营业，周末照常。"
COACH = "私教课多少钱; 私教怎么收费 | 私教 300 元/节，10 节起优惠。"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # No cool-down unless a test is about it: tests ask the same entry several times.
    return make_settings(tmp_path / "data", faq={"cooldown_s": 0})


def repo(bot: BotHarness) -> FaqRepo:
    return bot.ctx.services["faq"].repo  # type: ignore[no-any-return]


async def add(bot: BotHarness, spec: str, room: str | None = ROOM) -> str:
    return (await bot.ask(f"/faq add {spec}", by=MANAGER, room=room)).text


async def test_add_then_answer_in_group(bot: BotHarness) -> None:
    assert "#1" in await add(bot, HOURS)
    assert "#2" in await add(bot, COACH)
    reply = await bot.ask("请问你们几点开门", by=XIAOMING)
    assert "6:00-23:00" in reply.text
    assert reply.mention_ids == (XIAOMING,)
    entry = repo(bot).get(ROOM, 1)
    assert entry is not None and entry.hits == 1
    assert repo(bot).counters(ROOM)["answers"] == 1


async def test_chatter_stays_silent(bot: BotHarness) -> None:
    await add(bot, HOURS)
    await add(bot, COACH)
    for text in [
        "今天天气真好",
        "哈哈哈哈",
        "收到",
        "我刚跑完步，累死了",
        "晚上一起吃饭吗",
        "现在几点了？",
        "今天开门早",
        "[强][强]",
        "@小红 周末一起练",
    ]:
        await bot.silent(text, by=XIAOHONG)
    assert repo(bot).counters(ROOM)["answers"] == 0


async def test_fair_match_needs_a_mention_or_question_mark(bot: BotHarness) -> None:
    await add(bot, HOURS)
    await add(bot, COACH)
    # "私教" alone is a fair match, not a confident one: silent unprompted...
    await bot.silent("私教", by=XIAOHONG)
    # ...answered when the bot is @mentioned or the message carries a question mark
    reply = await bot.ask("私教", by=XIAOHONG, mention_self=True)
    assert "300 元" in reply.text and reply.mention_ids == (XIAOHONG,)
    assert "300 元" in (await bot.ask("私教？", by=AQIANG)).text


async def test_cool_down_points_the_second_asker_up(harness: BotHarness, tmp_path: Path) -> None:
    harness.settings = make_settings(tmp_path / "cd")  # the default cool-down, 60 s
    clock = FakeClock(time.time())
    await harness.start(clock=clock)
    bot = harness
    await add(bot, HOURS)
    first = await bot.ask("几点开门？", by=XIAOMING)
    assert "6:00-23:00" in first.text
    second = await bot.ask("你们周末开门吗", by=XIAOHONG)
    assert "6:00-23:00" not in second.text and "刚刚回答过" in second.text
    assert second.mention_ids == (XIAOHONG,)
    # the same question in another room is not affected by this room's cool-down
    await add(bot, "几点开门 | 瑜伽馆 9 点开门", room=ROOM2)
    assert "9 点" in (await bot.ask("几点开门？", by=LILY, room=ROOM2)).text
    await clock.advance(61)
    assert "6:00-23:00" in (await bot.ask("几点开门？", by=AQIANG)).text


async def test_misses_are_logged_grouped_and_listed(bot: BotHarness) -> None:
    await add(bot, HOURS)
    for who, text in [
        (XIAOMING, "有热水洗澡吗？"),
        (XIAOHONG, "能洗澡吗？"),
        (AQIANG, "有没有热水洗澡"),
        (XIAOMING, "停车怎么收费？"),
    ]:
        await bot.silent(text, by=who)
    await bot.silent("今天练腿了", by=XIAOMING)  # a statement is no miss
    misses = repo(bot).misses(ROOM)
    assert [m.text for m in misses] == [
        "有热水洗澡吗？",
        "能洗澡吗？",
        "有没有热水洗澡",
        "停车怎么收费？",
    ]
    reply = (await bot.ask("/faq misses", by=MANAGER)).text
    lines = reply.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("1."))
    assert "洗澡" in lines[first] and "3 次" in lines[first]
    assert lines[first + 1].startswith("2.") and "停车" in lines[first + 1]
    assert "/faq addq" in reply
    # a miss attached as a new question form is answered from then on
    await add(bot, "有淋浴吗 | 有，更衣室旁边，24 小时热水。")
    assert "已为 #2 添加" in (await bot.ask("/faq addq 2 | 有热水洗澡吗？", by=MANAGER)).text
    entry = repo(bot).get(ROOM, 2)
    assert entry is not None and entry.questions == ("有淋浴吗", "有热水洗澡吗？")
    assert "24 小时热水" in (await bot.ask("有热水洗澡吗？", by=LILY)).text


async def test_mentioned_without_an_answer_says_so_and_logs(bot: BotHarness) -> None:
    reply = await bot.ask("游泳池几点开放？", by=XIAOMING, mention_self=True)
    assert "还不会回答" in reply.text and "@群主" in reply.text
    assert [m.text for m in repo(bot).misses(ROOM)] == ["游泳池几点开放？"]


async def test_admin_edits_take_effect_at_once(bot: BotHarness) -> None:
    await add(bot, HOURS)
    assert "6:00-23:00" in (await bot.ask("几点开门", by=XIAOMING)).text
    edited = (await bot.ask("/faq edit 1 | 夏季 5:30-23:30 营业", by=MANAGER)).text
    assert "已修改 #1" in edited and "6:00-23:00" in edited  # the old answer, to undo by hand
    assert "5:30-23:30" in (await bot.ask("周末开门吗", by=XIAOHONG)).text
    listing = (await bot.ask("/faq list", by=MANAGER)).text
    assert "#1 营业时间 / 几点开门 / 周末开门吗" in listing and "命中 2" in listing
    deleted = (await bot.ask("/faq del 1", by=MANAGER)).text
    assert "/faq add 营业时间; 几点开门; 周末开门吗 | 夏季 5:30-23:30 营业" in deleted
    assert repo(bot).get(ROOM, 1) is None
    await bot.silent("几点开门", by=AQIANG)
    # /undo restores it; numbers are never reused: the restored entry is #2
    assert "#2" in (await bot.ask("/undo", by=MANAGER)).text
    assert "5:30-23:30" in (await bot.ask("几点开门", by=LILY)).text


async def test_edits_survive_a_restart(bot: BotHarness) -> None:
    await add(bot, HOURS)
    await bot.ask("/faq edit 1 | 改了：7 点开门", by=MANAGER)
    await bot.restart()
    assert "7 点开门" in (await bot.ask("几点开门", by=XIAOMING)).text


async def test_member_cannot_manage_faq(bot: BotHarness) -> None:
    reply = await bot.ask("/faq add 测试 | 测试", by=XIAOMING)
    assert "管理员命令" in reply.text
    assert repo(bot).entries() == []
    last = bot.store.audit.last(1, ROOM)[0]
    assert last.actor_id == XIAOMING and last.result == "refused"


async def test_bad_faq_commands_get_usage(bot: BotHarness) -> None:
    assert "用法" in (await bot.ask("/faq add 只有问题", by=MANAGER)).text
    assert "用法" in (await bot.ask("/faq add | 只有答案", by=MANAGER)).text
    assert "没有编号为 #9" in (await bot.ask("/faq del 9", by=MANAGER)).text
    assert "应为数字" in (await bot.ask("/faq edit x | y", by=MANAGER)).text
    assert "用法" in (await bot.ask("/faq misses abc", by=MANAGER)).text
    assert "只有全局管理员" not in (await bot.ask("/faq", by=MANAGER)).text


async def test_private_chat_uses_the_members_rooms(bot: BotHarness) -> None:
    await add(bot, "瑜伽课怎么预约; 怎么约瑜伽课 | 在小程序里预约，提前一天开放。", room=ROOM2)
    await add(bot, COACH)
    # LILY is in ROOM2: its set answers her privately, without an @mention
    reply = await bot.ask("瑜伽课怎么约", by=LILY, room=None)
    assert "小程序" in reply.text and reply.mention_ids == ()
    # AQIANG is only in ROOM: ROOM2's entry is not his; he hears "don't know" and it is logged
    reply = await bot.ask("瑜伽课怎么约", by=AQIANG, room=None)
    assert "还不会回答" in reply.text
    misses = repo(bot).misses(ROOM)
    assert [(m.text, m.private) for m in misses] == [("瑜伽课怎么约", True)]
    assert repo(bot).misses(ROOM2) == []
    assert repo(bot).counters(GLOBAL) == {"answers": 1, "misses": 1}
    # ROOM's set answers XIAOMING privately with a fair match (no question mark needed)
    assert "300 元" in (await bot.ask("私教", by=XIAOMING, room=None)).text


async def test_every_private_message_gets_a_reply(bot: BotHarness) -> None:
    assert "还不会回答" in (await bot.ask("你好呀，在吗", by=XIAOMING, room=None)).text
    assert "/help" in (await bot.ask("[微笑]", by=XIAOMING, room=None)).text
    assert "/help" in (await bot.ask("/nosuchcommand", by=XIAOMING, room=None)).text
    # commands are routed before the FAQ
    assert (await bot.ask("/ping", by=XIAOMING, room=None)).text == "pong"


async def test_global_entries_answer_everywhere(bot: BotHarness) -> None:
    assert "全局#1" in await add(bot, "* 怎么开发票 | 在订单页申请电子发票。")
    assert "电子发票" in (await bot.ask("怎么开发票？", by=LILY, room=ROOM2)).text
    assert "电子发票" in (await bot.ask("发票怎么开", by=AQIANG, room=None)).text
    assert "#1" in await add(bot, HOURS)  # room numbering is separate from the global set


async def test_answer_with_an_image(bot: BotHarness, tmp_path: Path) -> None:
    folder = bot.settings.data_dir / "faq_images"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "map.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 32)
    await add(bot, "停车场在哪 | 地下二层，见地图 https://example.com/map [img:map.png]")
    replies = await bot.replies_to("停车场在哪？", by=XIAOMING)
    assert "https://example.com/map" in replies[0].text
    assert replies[1].kind == "image" and replies[1].text == "map.png"


async def test_an_image_outside_the_image_folder_is_refused(
    bot: BotHarness, tmp_path: Path
) -> None:
    secret = tmp_path / "bot.yaml"
    secret.write_text("puppet: {token: not-for-chat}", encoding="utf-8")
    for ref in (str(secret), "../../bot.yaml", "../faq_images/../x.png"):
        reply = (await bot.ask(f"/faq add 密码 | 见图 [img:{ref}]", by=MANAGER)).text
        assert "找不到图片" in reply and "faq_images" in reply
    assert repo(bot).get(ROOM, 1) is None


async def test_old_miss_texts_are_purged_counts_stay(harness: BotHarness) -> None:
    # The bot's clock starts 31 days back, so the member's message (stamped with real time)
    # is in reply range both before and after the jump to today.
    clock = FakeClock(time.time() - 31 * 86400)
    await harness.start(clock=clock)
    bot = harness
    await bot.silent("有没有游泳池？", by=XIAOMING)
    assert len(repo(bot).misses(ROOM)) == 1
    await clock.advance(31 * 86400)  # past privacy.miss_text_days (30)
    reply = (await bot.ask("/faq misses 30", by=MANAGER)).text
    assert "没有未答的问题" in reply and "未答 1 次" in reply
    assert repo(bot).misses(None) == []
