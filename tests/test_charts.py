"""Charts: PNGs are produced, and their Chinese labels are real glyphs, not boxes."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from bot import charts
from bot.analytics import funnel_report, retention_report, stats_report
from tests.test_analytics import END, ROOM

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NO_CJK = "DejaVu Sans"  # matplotlib's bundled font: no CJK glyphs


@pytest.fixture(autouse=True)
def _fresh_font_lookup() -> Iterator[None]:
    charts._reset_font_cache()
    yield
    charts._reset_font_cache()


def cjk_or_skip() -> str:
    font = charts.cjk_font()
    if font is None:
        pytest.skip("no CJK font installed (Debian: apt-get install -y fonts-noto-cjk)")
    return font


def ink(png: bytes) -> np.ndarray:
    """Boolean mask of the dark (text) pixels of a rendered PNG."""
    img = imread(io.BytesIO(png))
    gray = img[..., :3].mean(axis=2)
    return np.asarray(gray < 0.5)


def render_quiet(text: str, font: str) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Glyph ... missing" for the non-CJK font
        return charts.render_text_png(text, font)


def test_cjk_glyphs_render_and_are_not_the_missing_glyph_box() -> None:
    font = cjk_or_skip()
    # Without CJK glyphs every character falls back to the same .notdef box, so two
    # different characters render identically: this is what "boxes" look like.
    box_a, box_b = ink(render_quiet("留", NO_CJK)), ink(render_quiet("存", NO_CJK))
    assert box_a.any() and np.array_equal(box_a, box_b)
    # With the CJK font the two characters are different shapes, each unlike the box.
    cjk_a, cjk_b = ink(render_quiet("留", font)), ink(render_quiet("存", font))
    assert cjk_a.any() and cjk_b.any()
    assert not np.array_equal(cjk_a, cjk_b)
    assert not np.array_equal(cjk_a, box_a) and not np.array_equal(cjk_b, box_a)
    # A real glyph of a complex character has far more ink than a hollow box outline.
    assert cjk_a.sum() > box_a.sum()
    # And the CJK font does not warn about missing glyphs for our labels.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        charts.render_text_png("日活 周活 月活 留存率 渠道增长 扫码 数据不完整", font)
    assert not [w for w in caught if "missing from font" in str(w.message)]


CHARTS: list[tuple[str, Callable[[], bytes]]] = [
    ("activity", lambda: charts.activity_chart(stats_report(ROOM, END, days=10))),
    ("retention", lambda: charts.retention_chart(retention_report(ROOM, END, weeks=2))),
    ("funnel", lambda: charts.funnel_chart(funnel_report(ROOM, END, days=10))),
]


@pytest.mark.parametrize(("name", "make"), CHARTS, ids=[c[0] for c in CHARTS])
def test_charts_render_chinese_labels(name: str, make: Callable[[], bytes]) -> None:
    cjk_or_skip()
    # matplotlib warns "Glyph N (...) missing from font(s) ..." for every character
    # it has to draw as a box; a chart with Chinese title, axes and legend must not.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = make()
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert missing == []
    assert png.startswith(PNG_MAGIC) and len(png) > 5_000
    img = imread(io.BytesIO(png))
    assert img.shape[0] >= 250 and img.shape[1] >= 500


def test_without_cjk_font_it_warns_once_and_boxes_appear(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The check above is meaningful: force "no CJK font" and the same chart does
    # produce missing-glyph warnings, and the log warns exactly once.
    monkeypatch.setattr(charts, "CJK_FONTS", ("No Such Font CJK",))
    with caplog.at_level(logging.WARNING, logger="bot.charts"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            charts.activity_chart(stats_report(ROOM, END, days=10))
            charts.funnel_chart(funnel_report(ROOM, END, days=10))
    assert any("missing from font" in str(w.message) for w in caught)
    logged = [r for r in caplog.records if "no CJK font" in r.getMessage()]
    assert len(logged) == 1


def test_png_written_to_path(tmp_path: Path) -> None:
    out = tmp_path / "stats.png"
    data = charts.activity_chart(stats_report(ROOM, END, days=10), path=out)
    assert out.read_bytes() == data and data.startswith(PNG_MAGIC)
