"""bot.yaml → typed settings.

Every key of SPEC.md section 11 is here with its default. Unknown keys are
errors (a typo must not be silently ignored), and every error names the key's
path and what is allowed. The service endpoint and token may come from the
standard wechaty variables, which win over the file; the token is never
printed (`SecretStr`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_ENDPOINT = "WECHATY_PUPPET_SERVICE_ENDPOINT"
ENV_TOKEN = "WECHATY_PUPPET_SERVICE_TOKEN"
_HHMM = r"(?:[01]\d|2[0-3]):[0-5]\d"
QUIET_HOURS_RE = re.compile(rf"^({_HHMM})-({_HHMM})$")

DEFAULT_NOTICE_ZH = (
    "【隐私说明】本群助手记录：发言的日期和次数（不存消息内容）、签到、报名和抽奖参与记录、"
    "入群时间和邀请人，用于活动统计和群运营；未答出的问题文字保留 {miss_days} 天用于完善问答。"
    "数据保留 {retention_days} 天。发送 /forget（删除我的数据）可删除你的个人数据。"
)
DEFAULT_NOTICE_EN = (
    "[Privacy] This bot records the dates and counts of your messages (never their text), "
    "check-ins, sign-ups, lottery entries, when you joined and who invited you, to run and "
    "measure this group; unanswered questions are kept {miss_days} days to improve answers. "
    "Data is kept {retention_days} days. Send /forget to delete your personal data."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PuppetSettings(_Strict):
    mode: Literal["sandbox", "service"] = "sandbox"
    endpoint: str = ""
    token: SecretStr = SecretStr("")
    watchdog_s: float = Field(
        120.0, gt=0, description="reconnect when the stream is silent this long"
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint_form(cls, v: str) -> str:
        if v and not re.fullmatch(r"[\w.\-\[\]:]+:\d{1,5}", v):
            raise ValueError("must be host:port, e.g. 127.0.0.1:8788")
        return v


class RoomSettings(_Strict):
    id: str = ""
    topic: str = ""  # name a room by topic: resolved to an id at login (topics can change)
    welcome: str = ""
    quiet_hours: str = ""
    privacy_notice: str = ""

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, v: str) -> str:
        if v and not QUIET_HOURS_RE.match(v):
            raise ValueError('must be "HH:MM-HH:MM", e.g. "22:00-08:00"')
        return v

    @model_validator(mode="after")
    def _named(self) -> RoomSettings:
        if not self.id and not self.topic:
            raise ValueError("a room needs `id` (e.g. 12345@chatroom) or `topic`")
        return self


class SendSettings(_Strict):
    per_room_per_min: int = Field(12, ge=1)
    global_per_min: int = Field(30, ge=1)
    daily_cap: int = Field(1500, ge=1)
    min_interval_ms: int = Field(1500, ge=0)
    jitter_ms: int = Field(1500, ge=0)
    cooldown_s: int = Field(3600, ge=0)


class WebSettings(_Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    token: SecretStr = SecretStr("")


class PrivacySettings(_Strict):
    mode: Literal["notice", "opt-in"] = "notice"
    notice: str = ""
    retention_days: int = Field(365, ge=1)
    miss_text_days: int = Field(30, ge=0)


class FaqSettings(_Strict):
    cooldown_s: float = Field(60.0, ge=0)
    confident: float | None = Field(None, gt=0, le=1)  # None: the matcher's calibrated default
    fair: float | None = Field(None, gt=0, le=1)


class SandboxRoom(_Strict):
    topic: str
    owner: str = ""
    members: dict[str, str] = Field(default_factory=dict)  # id -> name


class SandboxSettings(_Strict):
    """The simulated world of sandbox mode (ignored in service mode)."""

    self_id: str = "wxid_qunbot"
    self_name: str = "群助手"
    rooms: dict[str, SandboxRoom] = Field(default_factory=dict)
    port: int = Field(0, ge=0, le=65535)  # 0: any free port


class AnnouncementSettings(_Strict):
    """A static announcement declared in bot.yaml (`at` one-off or `cron`)."""

    room: str
    text: str
    at: str = ""
    cron: str = ""

    @model_validator(mode="after")
    def _one_schedule(self) -> AnnouncementSettings:
        if bool(self.at) == bool(self.cron):
            raise ValueError(
                'give exactly one of `at: "YYYY-MM-DD HH:MM"` or `cron: "m h dom mon dow"`'
            )
        if self.at:
            try:
                datetime.strptime(self.at, "%Y-%m-%d %H:%M")
            except ValueError:
                raise ValueError(
                    '`at` must be "YYYY-MM-DD HH:MM", e.g. "2026-12-01 09:00"'
                ) from None
        if self.cron:
            from bot.scheduler import parse_cron  # the same parser the scheduler uses

            parse_cron(self.cron, ZoneInfo("UTC"))  # raises a readable ValueError
        return self


class Settings(_Strict):
    puppet: PuppetSettings = PuppetSettings()
    rooms: list[RoomSettings] = Field(default_factory=list)
    admins: list[str] = Field(default_factory=list)
    bots: list[str] = Field(default_factory=list)  # other bots: excluded from statistics
    room_owner_is_admin: bool = False
    data_dir: Path = Path("./data")
    timezone: str = "Asia/Shanghai"
    language: Literal["zh", "en"] = "zh"
    reply_window: float = Field(120.0, ge=0)
    activity_flush_s: float = Field(2.0, gt=0)
    backup_keep: int = Field(7, ge=1)
    misfire_grace_s: float = Field(600.0, ge=0)
    send: SendSettings = SendSettings()
    web: WebSettings = WebSettings()
    privacy: PrivacySettings = PrivacySettings()
    faq: FaqSettings = FaqSettings()
    sandbox: SandboxSettings = SandboxSettings()
    announcements: list[AnnouncementSettings] = Field(default_factory=list)

    @field_validator("rooms", mode="before")
    @classmethod
    def _room_strings(cls, v: Any) -> Any:
        # A plain string is a room id (SPEC section 11).
        if isinstance(v, list):
            return [{"id": r} if isinstance(r, str) else r for r in v]
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone name, e.g. Asia/Shanghai") from None
        return v

    @model_validator(mode="after")
    def _service_needs_endpoint(self) -> Settings:
        if self.puppet.mode == "service" and not self.puppet.endpoint:
            raise ValueError(
                f"puppet.endpoint: service mode needs host:port (in bot.yaml or ${ENV_ENDPOINT}); "
                "qunbot never asks an internet discovery service"
            )
        return self

    @model_validator(mode="after")
    def _announcements_target_served_rooms(self) -> Settings:
        served = {r.id for r in self.rooms if r.id}
        for i, a in enumerate(self.announcements):
            if a.room not in served:
                raise ValueError(
                    f"announcements[{i}].room: {a.room!r} is not the id of a room in `rooms` "
                    "(topics are only resolved at login, so announcements need the id)"
                )
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def room(self, room_id: str) -> RoomSettings | None:
        return next((r for r in self.rooms if r.id == room_id), None)

    @property
    def room_ids(self) -> frozenset[str]:
        return frozenset(r.id for r in self.rooms if r.id)

    def privacy_notice(self, room_id: str | None = None) -> str:
        room = self.room(room_id) if room_id else None
        template = (
            (room.privacy_notice if room else "")
            or self.privacy.notice
            or (DEFAULT_NOTICE_ZH if self.language == "zh" else DEFAULT_NOTICE_EN)
        )
        return template.format(
            miss_days=self.privacy.miss_text_days, retention_days=self.privacy.retention_days
        )


class ConfigError(Exception):
    """bot.yaml is unusable; `errors` holds one line per problem, each naming the key path."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: " + "; ".join(errors))


def _loc(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif p.startswith("function-") or p in {"str", "dict[str,any]"}:
            continue  # pydantic's internal union/validator tags, not keys
        else:
            parts.append(("." if parts else "") + p)
    return "".join(parts) or "(top level)"


def explain(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        path = _loc(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling against SPEC.md section 11)"
        # Cross-key checks at the top level already name their key in the message.
        lines.append(msg if not e["loc"] and re.match(r"^[\w.\[\]]+: ", msg) else f"{path}: {msg}")
    return lines


def apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """The standard wechaty variables win over the file (SPEC section 2)."""
    puppet = dict(raw.get("puppet") or {})
    if env.get(ENV_ENDPOINT):
        puppet["endpoint"] = env[ENV_ENDPOINT]
    if env.get(ENV_TOKEN):
        puppet["token"] = env[ENV_TOKEN]
    if puppet:
        raw = {**raw, "puppet": puppet}
    return raw


def parse(raw: Any, *, source: str = "bot.yaml", env: Mapping[str, str] | None = None) -> Settings:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, ["(top level): must be a mapping of keys, e.g. `language: zh`"])
    raw = apply_env(raw, os.environ if env is None else env)
    try:
        return Settings.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(source, explain(e)) from None


def load(path: Path | str, *, env: Mapping[str, str] | None = None) -> Settings:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(str(path), [f"(YAML syntax) {e}"]) from None
    settings = parse(raw, source=str(path), env=env)
    if not settings.data_dir.is_absolute():
        # data_dir is relative to the config file, not to wherever the bot was started.
        settings = settings.model_copy(
            update={"data_dir": (path.parent / settings.data_dir).resolve()}
        )
    return settings
