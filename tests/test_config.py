"""bot.yaml validation: defaults, errors naming the key path and what is allowed, env overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import config
from bot.cli import main
from bot.config import ConfigError


def errors_of(raw: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as e:
        config.parse(raw, env=env or {})
    return e.value.errors


def test_defaults_match_the_spec() -> None:
    s = config.parse({}, env={})
    assert s.puppet.mode == "sandbox"
    assert s.timezone == "Asia/Shanghai" and s.language == "zh"
    assert s.reply_window == 120 and s.activity_flush_s == 2
    assert (s.send.per_room_per_min, s.send.global_per_min, s.send.daily_cap) == (12, 30, 1500)
    assert (s.send.min_interval_ms, s.send.jitter_ms, s.send.cooldown_s) == (1500, 1500, 3600)
    assert (s.web.enabled, s.web.host, s.web.port) == (True, "127.0.0.1", 8080)
    assert (s.privacy.mode, s.privacy.retention_days, s.privacy.miss_text_days) == (
        "notice",
        365,
        30,
    )


def test_the_repository_bot_yaml_is_valid() -> None:
    s = config.load(Path(__file__).parent.parent / "bot.yaml", env={})
    assert s.room_ids == {"10001@chatroom"}


def test_rooms_as_strings_and_mappings() -> None:
    s = config.parse(
        {
            "rooms": [
                "1@chatroom",
                {"id": "2@chatroom", "quiet_hours": "22:00-08:00"},
                {"topic": "健身群"},
            ]
        },
        env={},
    )
    assert s.room_ids == {"1@chatroom", "2@chatroom"}
    assert s.rooms[2].topic == "健身群"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"puppet": {"mode": "servise"}}, "puppet.mode: Input should be 'sandbox' or 'service'"),
        ({"langauge": "zh"}, "langauge: unknown key"),
        (
            {"send": {"per_room_per_min": 0}},
            "send.per_room_per_min: Input should be greater than or equal to 1",
        ),
        (
            {"rooms": [{"id": "1@chatroom", "quiet_hours": "late"}]},
            'rooms[0].quiet_hours: must be "HH:MM-HH:MM"',
        ),
        ({"rooms": [{"welcome": "hi"}]}, "rooms[0]: a room needs `id`"),
        ({"timezone": "Mars/Base"}, "timezone: must be an IANA time zone name"),
        ({"language": "fr"}, "language: Input should be 'zh' or 'en'"),
        ({"web": {"port": 70000}}, "web.port: Input should be less than or equal to 65535"),
        ({"puppet": {"mode": "service"}}, "puppet.endpoint: service mode needs host:port"),
        (
            {"puppet": {"mode": "service", "endpoint": "nohost"}},
            "puppet.endpoint: must be host:port",
        ),
        ([1, 2], "(top level): must be a mapping"),
        (
            {
                "rooms": ["1@chatroom"],
                "announcements": [{"room": "1@chatroom", "text": "x", "at": "tomorrow"}],
            },
            'announcements[0]: `at` must be "YYYY-MM-DD HH:MM"',
        ),
        (
            {
                "rooms": ["1@chatroom"],
                "announcements": [{"room": "1@chatroom", "text": "x", "cron": "0 25 * * *"}],
            },
            "announcements[0]: ",
        ),
        (
            {
                "rooms": ["1@chatroom"],
                "announcements": [{"room": "2@chatroom", "text": "x", "at": "2026-01-01 09:00"}],
            },
            "announcements[0].room: '2@chatroom' is not the id of a room in `rooms`",
        ),
    ],
)
def test_errors_name_the_key_and_what_is_allowed(raw: object, expected: str) -> None:
    assert any(e.startswith(expected) for e in errors_of(raw)), errors_of(raw)


def test_environment_wins_over_the_file_and_the_token_is_secret() -> None:
    env = {config.ENV_ENDPOINT: "10.0.0.2:9001", config.ENV_TOKEN: "s3cret-token"}
    s = config.parse(
        {"puppet": {"mode": "service", "endpoint": "1.2.3.4:1", "token": "file"}}, env=env
    )
    assert s.puppet.endpoint == "10.0.0.2:9001"
    assert s.puppet.token.get_secret_value() == "s3cret-token"
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.model_dump())


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bot.yaml"
    bad.write_text("puppet: {mode: servise}\nroom: []\n", encoding="utf-8")
    assert main_exit(["check-config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "puppet.mode" in err and "'sandbox' or 'service'" in err and "room: unknown key" in err
    bad.write_text("puppet: [\n", encoding="utf-8")
    assert main_exit(["check-config", "--config", str(bad)]) == 2
    assert "YAML syntax" in capsys.readouterr().err
    assert main_exit(["check-config", "--config", str(tmp_path / "missing.yaml")]) == 2
    good = tmp_path / "good.yaml"
    good.write_text("rooms: ['1@chatroom']\n", encoding="utf-8")
    assert main_exit(["check-config", "--config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out


def main_exit(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)
