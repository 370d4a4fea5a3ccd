"""Core member commands: /help (generated from the declarations) and /ping."""

from __future__ import annotations

from bot.router import Dispatcher, Request, Router, help_text

router = Router("core")


@router.command(
    "help",
    usage="/help",
    zh="显示你可用的命令",
    en="the commands you may use here",
    aliases=("帮助",),
    where="any",
)
async def show_help(req: Request) -> None:
    dispatcher = req.ctx.services["dispatcher"]
    assert isinstance(dispatcher, Dispatcher)
    await req.reply(help_text(dispatcher, req))


@router.command(
    "ping", usage="/ping", zh="检查机器人是否在线", en="check the bot is alive", where="any"
)
async def ping(req: Request) -> None:
    await req.reply("pong")
