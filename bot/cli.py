"""The `qunbot` command line (SPEC.md section 8)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from bot import config as config_mod
from bot.config import ConfigError, Settings

log = logging.getLogger("qunbot")


def setup_logging(level: str = "INFO") -> None:
    # One structured line per record: easy to grep and to ship.
    logging.basicConfig(
        level=level,
        format="%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # wechaty's own scheduler chatter


def load_settings(path: str) -> Settings:
    try:
        return config_mod.load(path)
    except ConfigError as e:
        print(f"qunbot: invalid configuration in {e.source}:", file=sys.stderr)
        for line in e.errors:
            print(f"  - {line}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    rooms = ", ".join(r.id or f"topic:{r.topic}" for r in settings.rooms) or "(none)"
    print(f"{args.config}: OK")
    print(
        f"  mode={settings.puppet.mode} rooms={rooms} language={settings.language} "
        f"timezone={settings.timezone} data_dir={settings.data_dir}"
    )
    if not settings.rooms:
        print("  note: no rooms are listed, so the bot will only answer private chats")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    setup_logging(args.log_level)
    from bot.runner import run_bot

    try:
        return asyncio.run(run_bot(settings, scenario=args.scenario, install_signals=_signals))
    except KeyboardInterrupt:
        return 130


def _signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def cmd_backup(args: argparse.Namespace) -> int:
    from storage.backup import backup

    settings = load_settings(args.config)
    path = backup(settings.data_dir, Path(args.dest) if args.dest else None)
    print(f"backup written: {path}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from storage.backup import restore

    settings = load_settings(args.config)
    restore(settings.data_dir, Path(args.file))
    print(f"restored {args.file} into {settings.data_dir}")
    return 0


def cmd_lottery(args: argparse.Namespace, rest: list[str]) -> int:
    from bot.lottery_math import verify_cli

    return verify_cli(rest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qunbot", description="WeChat group community bot")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "--config", default="bot.yaml", help="path to bot.yaml (default: ./bot.yaml)"
        )
        return sp

    run = with_config(
        sub.add_parser("run", help="run the bot (sandbox mode starts a local gateway)")
    )
    run.add_argument("--scenario", help="load a playbook from scenarios/ into the sandbox")
    run.add_argument("--log-level", default="INFO")
    run.set_defaults(func=cmd_run)
    with_config(sub.add_parser("check-config", help="validate bot.yaml")).set_defaults(
        func=cmd_check_config
    )
    b = with_config(sub.add_parser("backup", help="consistent copy of the data directory"))
    b.add_argument("--dest", help="directory for the archive (default: data_dir/backups)")
    b.set_defaults(func=cmd_backup)
    r = with_config(sub.add_parser("restore", help="restore a backup (the bot must be stopped)"))
    r.add_argument("file")
    r.set_defaults(func=cmd_restore)
    sub.add_parser("lottery", help="`qunbot lottery verify --help`: check a published draw offline")
    sub.add_parser("report", help="`qunbot report stats|retention|funnel|invites --room ID ...`")
    sub.add_parser("faq", help="`qunbot faq import|export FILE`: FAQ sets as YAML or CSV")
    return p


def passthrough(command: str, argv: list[str]) -> int | None:
    """Feature tools own their argument parsing, next to the feature."""
    if command == "lottery":
        if argv[:1] != ["verify"]:
            print("usage: qunbot lottery verify --commitment C --seed S ...", file=sys.stderr)
            return 2
        return cmd_lottery(argparse.Namespace(), argv[1:])
    if command == "report":
        from handlers.analytics import report_cli

        return report_cli(argv)
    if command == "faq":
        from handlers.faq import faq_cli

        return faq_cli(argv)
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and (code := passthrough(argv[0], argv[1:])) is not None:
        return code
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as e:  # noqa: BLE001 - operator-facing: one clear line, not a traceback
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        print(f"qunbot {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
