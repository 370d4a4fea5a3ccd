"""`qunbot faq import|export` (handlers.faq.faq_cli): YAML and CSV round trips, bad rows."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
import yaml

from handlers.faq import faq_cli
from storage import layout
from storage.faq import GLOBAL, FaqEntry, FaqRepo
from storage.store import Store
from tests.conftest import ROOM, ROOM2

ENTRIES = f"""\
entries:
  - room: "{ROOM}"
    questions: [营业时间, 几点开门]
    answer: "每天 6:00-23:00"
  - room: "{ROOM}"
    questions: "私教多少钱; 私教怎么收费"
    answer: |-
      私教 300 元/节
      10 节起优惠
    link: https://example.com/coach
  - questions: [怎么开发票]
    answer: 在订单页申请
    image: map.png
"""


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump({"rooms": [ROOM, ROOM2], "data_dir": str(tmp_path / "data")}))
    (tmp_path / "map.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return str(path)


def entries(data_dir: Path) -> list[FaqEntry]:
    async def read() -> list[FaqEntry]:
        store = await Store.open(data_dir)
        try:
            # content only: the edit time is not part of what an export carries
            return [dataclasses.replace(e, updated_ts=0.0) for e in FaqRepo(store).entries()]
        finally:
            await store.close()

    return asyncio.run(read())


def test_yaml_round_trip(tmp_path: Path, config: str, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "faq.yaml"
    src.write_text(ENTRIES, encoding="utf-8")
    assert faq_cli(["import", str(src), "--config", config]) == 0
    assert "imported 3 entries" in capsys.readouterr().out
    got = entries(tmp_path / "data")
    assert [(e.room, e.num) for e in got] == [(GLOBAL, 1), (ROOM, 1), (ROOM, 2)]
    coach = got[2]
    assert coach.questions == ("私教多少钱", "私教怎么收费")
    assert (
        coach.answer == "私教 300 元/节\n10 节起优惠" and coach.link == "https://example.com/coach"
    )
    # the image is copied where the bot sends images from
    copied = tmp_path / "data" / "faq_images" / "map.png"
    assert got[0].image == str(copied.resolve())
    assert copied.read_bytes() == (tmp_path / "map.png").read_bytes()

    out = tmp_path / "out.yaml"
    assert faq_cli(["export", str(out), "--config", config]) == 0
    # importing the export again changes nothing: numbered rows replace themselves
    assert faq_cli(["import", str(out), "--config", config]) == 0
    assert "(3 replaced)" in capsys.readouterr().out
    assert entries(tmp_path / "data") == got
    out2 = tmp_path / "out2.yaml"
    assert faq_cli(["export", str(out2), "--config", config]) == 0
    assert out2.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")


def test_csv_round_trip_into_a_fresh_bot(tmp_path: Path, config: str) -> None:
    src = tmp_path / "faq.yaml"
    src.write_text(ENTRIES, encoding="utf-8")
    assert faq_cli(["import", str(src), "--config", config]) == 0
    csv_path = tmp_path / "faq.csv"
    assert faq_cli(["export", str(csv_path), "--config", config]) == 0
    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbf")  # Excel opens it as UTF-8

    other = tmp_path / "other"
    other.mkdir()
    cfg2 = other / "bot.yaml"
    cfg2.write_text(yaml.safe_dump({"rooms": [ROOM, ROOM2], "data_dir": str(other / "data")}))
    assert faq_cli(["import", str(csv_path), "--config", str(cfg2)]) == 0
    moved = [
        dataclasses.replace(e, image=e.image and Path(e.image).name)
        for e in entries(other / "data")
    ]
    orig = [
        dataclasses.replace(e, image=e.image and Path(e.image).name)
        for e in entries(tmp_path / "data")
    ]
    assert moved == orig
    assert (other / "data" / "faq_images" / "map.png").is_file()  # the new bot has its own copy


def test_import_into_another_room_gets_new_numbers(tmp_path: Path, config: str) -> None:
    src = tmp_path / "faq.yaml"
    src.write_text(ENTRIES, encoding="utf-8")
    assert faq_cli(["import", str(src), "--config", config]) == 0
    out = tmp_path / "room.csv"
    assert faq_cli(["export", str(out), "--room", ROOM, "--config", config]) == 0
    assert faq_cli(["import", str(out), "--room", ROOM2, "--config", config]) == 0
    got = [(e.room, e.num, e.questions[0]) for e in entries(tmp_path / "data")]
    assert (ROOM2, 1, "营业时间") in got and (ROOM2, 2, "私教多少钱") in got
    assert (ROOM, 1, "营业时间") in got  # the source room is untouched


def test_bad_rows_are_reported_with_line_numbers(
    tmp_path: Path, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "bad.yaml"
    src.write_text(
        "- questions: [好的问题]\n"  # line 1: fine
        "  answer: 好的答案\n"
        "- questions: []\n"  # line 3: no question
        "  answer: x\n"
        "- questions: [q]\n"  # line 5: no answer
        "- questions: [q2]\n"  # line 6: bad link
        "  answer: a\n"
        "  link: ftp://x\n"
        "- questoins: [typo]\n"  # line 9: unknown field
        "  answer: a\n",
        encoding="utf-8",
    )
    assert faq_cli(["import", str(src), "--config", config]) == 1
    err = capsys.readouterr().err
    assert "4 bad row(s); nothing was imported" in err
    assert "line 3: questions" in err and "line 5: answer" in err
    assert "line 6: link" in err and "line 9: unknown field 'questoins'" in err
    assert entries(tmp_path / "data") == []

    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text(
        "问题,答案,编号\n营业时间,9点,1\n,没有问题,2\n私教,300,x\n", encoding="utf-8"
    )
    assert faq_cli(["import", str(bad_csv), "--config", config]) == 1
    err = capsys.readouterr().err
    assert "line 3: questions" in err and "line 4: num" in err


def test_long_import_shows_progress(
    tmp_path: Path, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "long.csv"
    lines = ["questions,answer"] + [f"问题{i}号怎么办,答案{i}" for i in range(500)]
    src.write_text("\n".join(lines), encoding="utf-8")
    assert faq_cli(["import", str(src), "--room", ROOM, "--config", config]) == 0
    err = capsys.readouterr().err
    assert "checked 250/500 rows" in err and "writing 500 entries" in err
    assert len(entries(tmp_path / "data")) == 500


def test_import_while_the_bot_runs_is_refused(
    tmp_path: Path, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "faq.yaml"
    src.write_text(ENTRIES, encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    fd = layout.acquire_lock(data)  # what a running bot holds
    try:
        assert faq_cli(["import", str(src), "--config", config]) == 1
    finally:
        layout.release_lock(fd)
    assert "in use by another qunbot process" in capsys.readouterr().err


def test_unknown_extension(tmp_path: Path, config: str, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "faq.txt"
    src.write_text("x", encoding="utf-8")
    assert faq_cli(["import", str(src), "--config", config]) == 1
    assert ".csv" in capsys.readouterr().err
