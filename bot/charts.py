"""PNG charts for the analytics reports (matplotlib, Agg backend, Chinese labels).

Chinese renders only with a CJK font: `cjk_font()` picks the first installed
font from `CJK_FONTS` (Debian: `apt-get install fonts-noto-cjk`) and logs one
warning when none is found (labels then come out as boxes).
Every render function returns PNG bytes and, given `path`, also writes them there.
"""

from __future__ import annotations

import io
import logging
import threading
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib import font_manager  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from bot.analytics import FunnelReport, RetentionReport, StatsReport  # noqa: E402

__all__ = [
    "CJK_FONTS",
    "cjk_font",
    "activity_chart",
    "retention_chart",
    "funnel_chart",
    "render_text_png",
]

log = logging.getLogger(__name__)

CJK_FONTS: tuple[str, ...] = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
    "Heiti SC",
    "Droid Sans Fallback",
)

_lock = threading.Lock()
_chosen: list[str | None] = []  # cache: [] = not looked up yet


def cjk_font() -> str | None:
    """Name of the first installed CJK font from `CJK_FONTS`, or None (warned once)."""
    with _lock:
        if not _chosen:
            installed = {f.name for f in font_manager.fontManager.ttflist}
            name = next((n for n in CJK_FONTS if n in installed), None)
            if name is None:
                log.warning(
                    "no CJK font found (tried %s): Chinese chart labels will render as "
                    "boxes; install one, e.g. `apt-get install fonts-noto-cjk`",
                    ", ".join(CJK_FONTS),
                )
            _chosen.append(name)
        return _chosen[0]


def _reset_font_cache() -> None:
    """For tests: look the font up again on the next call."""
    with _lock:
        _chosen.clear()


def _font_family() -> list[str]:
    name = cjk_font()
    return ([name] if name else []) + ["DejaVu Sans"]


def _new_figure(width: float, height: float) -> Figure:
    # A Figure without pyplot: no global state, safe from threads.
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _style() -> AbstractContextManager[None]:
    return matplotlib.rc_context(
        {
            "font.family": "sans-serif",
            "font.sans-serif": _font_family(),
            "axes.unicode_minus": False,
        }
    )


def _png(fig: Figure, path: str | Path | None) -> bytes:
    buf = io.BytesIO()
    with _style():
        fig.savefig(buf, format="png")
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def _label(day: int) -> str:
    d = date.fromordinal(day)
    return f"{d.month}/{d.day}"


def _title(kind: str, room_name: str, room_id: str) -> str:
    return f"{room_name or room_id} · {kind}"


def activity_chart(report: StatsReport, path: str | Path | None = None) -> bytes:
    """DAU (line) and messages (bars) per day; incomplete days shaded."""
    with _style():
        fig = _new_figure(8, 4)
        ax = fig.add_subplot()
        xs = list(range(len(report.series)))
        msgs = [p.messages for p in report.series]
        dau = [p.dau for p in report.series]
        ax2 = ax.twinx()
        ax2.bar(xs, msgs, color="#9ecae1", alpha=0.6, label="消息数")
        ax2.set_ylabel("消息数")
        ax.plot(xs, dau, color="#d62728", marker="o", markersize=3, label="日活（DAU）")
        ax.set_ylabel("日活跃成员")
        ax.set_zorder(ax2.get_zorder() + 1)
        ax.patch.set_visible(False)
        for i, p in enumerate(report.series):
            if p.incomplete:
                ax.axvspan(i - 0.5, i + 0.5, color="#ffcc00", alpha=0.35, lw=0)
        step = max(1, len(xs) // 10)
        ax.set_xticks(xs[::step], [_label(p.day) for p in report.series][::step])
        ax.set_xlim(-0.5, len(xs) - 0.5)
        ax.set_ylim(bottom=0)
        ax2.set_ylim(bottom=0)
        handles = [
            *ax.get_legend_handles_labels()[0],
            *ax2.get_legend_handles_labels()[0],
        ]
        if any(p.incomplete for p in report.series):
            handles.append(Patch(color="#ffcc00", alpha=0.35, label="数据不完整（离线）"))
        ax.legend(handles=handles, loc="upper left", fontsize=8)
        ax.set_title(
            _title(
                f"近{report.days}天活跃：成员 {report.members}，日活 {report.dau_avg:.1f}",
                report.room_name,
                report.room_id,
            )
        )
        return _png(fig, path)


def retention_chart(report: RetentionReport, path: str | Path | None = None) -> bytes:
    """Weekly cohort heatmap: rows = cohort week, columns = weeks since joining."""
    with _style():
        rows = report.weekly
        k = report.weeks
        fig = _new_figure(max(6.0, 1.0 + 0.75 * k), max(3.0, 1.2 + 0.42 * len(rows)))
        ax = fig.add_subplot()
        grid: list[list[float]] = []
        for row in rows:
            line = []
            for c in row.cells:
                line.append(float("nan") if c.rate is None else c.rate)
            grid.append(line)
        cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#eeeeee")  # not yet observable
        im = ax.imshow(grid, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
        for i, row in enumerate(rows):
            for c in row.cells:
                if c.rate is None:
                    continue
                text = f"{c.rate * 100:.0f}%" + ("*" if c.incomplete else "")
                color = "white" if c.rate > 0.6 else "black"
                ax.text(c.offset, i, text, ha="center", va="center", fontsize=8, color=color)
                if c.incomplete:
                    ax.add_patch(
                        Rectangle(
                            (c.offset - 0.5, i - 0.5),
                            1,
                            1,
                            fill=False,
                            hatch="//",
                            lw=0,
                            edgecolor="#ff9900",
                        )
                    )
        ax.set_xticks(range(k), [f"第{j}周" for j in range(k)], fontsize=8)
        ax.set_yticks(
            range(len(rows)), [f"{_label(r.start_day)}（{r.size}人）" for r in rows], fontsize=8
        )
        ax.set_xlabel("加入后周数（* 含数据不完整的天，灰色 = 尚未到期）")
        ax.set_ylabel("加入周")
        fig.colorbar(im, ax=ax, label="留存率")
        ax.set_title(_title("周留存", report.room_name, report.room_id))
        return _png(fig, path)


def funnel_chart(report: FunnelReport, path: str | Path | None = None) -> bytes:
    """Per channel: joins, converted within 7 days, retained on day 7, growth."""
    with _style():
        rows = report.rows[:12]
        fig = _new_figure(max(6.0, 1.5 + 1.0 * len(rows)), 4)
        ax = fig.add_subplot()
        names = []
        for r in rows:
            if r.channel == "qrcode":
                names.append("扫码")
            elif r.channel == "unknown":
                names.append("未知")
            else:
                names.append(r.label[:8])
        xs = list(range(len(rows)))
        w = 0.2
        series = [
            ("加入（流量）", [float(r.traffic) for r in rows], "#6baed6"),
            ("7天内转化", [float(r.converted) for r in rows], "#fd8d3c"),
            ("第7天留存", [float(r.retained) for r in rows], "#74c476"),
            ("增长 = 流量×转化×留存", [r.growth or 0.0 for r in rows], "#9e9ac8"),
        ]
        for j, (name, vals, color) in enumerate(series):
            ax.bar([x + (j - 1.5) * w for x in xs], vals, w, label=name, color=color)
        ax.set_xticks(xs, names, fontsize=9)
        ax.set_ylabel("人数")
        ax.legend(fontsize=8)
        days = report.end_day - report.start_day + 1
        flag = "（⚠ 含数据不完整的天）" if report.incomplete else ""
        ax.set_title(_title(f"近{days}天渠道增长{flag}", report.room_name, report.room_id))
        return _png(fig, path)


def render_text_png(text: str, font: str, size: int = 32) -> bytes:
    """Just `text` in `font`, as PNG: used to check that glyphs really render."""
    with matplotlib.rc_context({"font.family": [font]}):
        fig = Figure(figsize=(0.25 + 0.5 * len(text) * size / 32, 0.8), dpi=100)
        fig.text(0.02, 0.5, text, fontsize=size, va="center")
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
