"""Report charts as PNG bytes (matplotlib, Agg backend: no display needed).

Chinese labels need a CJK font: the first installed one of a known list is
used (Debian/Ubuntu: ``fonts-wqy-microhei`` or ``fonts-noto-cjk``).  Without
one, Chinese charts fall back to the English labels rather than draw boxes.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from functools import lru_cache

import matplotlib

matplotlib.use("Agg")
from matplotlib import font_manager  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from maildesk.reports.metrics import WeeklyReport  # noqa: E402
from maildesk.templates import Renderer  # noqa: E402

log = logging.getLogger("maildesk.report")

CJK_FONTS = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN",
             "Microsoft YaHei", "PingFang SC", "SimHei", "Droid Sans Fallback", "AR PL UMing CN")
# Pixels per inch of the PNGs (a 7.2-inch chart is 792 pixels wide: sharp in a mail, small to send).
DPI = 110
COLOURS = {"received": "#4C78A8", "closed": "#54A24B", "open": "#E45756", "bar": "#4C78A8", "rating": "#F58518"}


@dataclass(frozen=True)
class Chart:
    content_id: str
    filename: str
    png: bytes
    alt: str
    title: str


# Where Debian, Ubuntu and Red Hat put the CJK fonts; matplotlib's font cache may
# predate their installation, so they are added by path when not yet known.
_FONT_GLOBS = ("/usr/share/fonts/**/wqy-microhei.ttc", "/usr/share/fonts/**/NotoSansCJK-Regular.ttc",
               "/usr/share/fonts/**/NotoSansCJK*.ttc", "/usr/share/fonts/**/SourceHanSans*.otf")


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    installed = {f.name for f in font_manager.fontManager.ttflist}
    found = next((name for name in CJK_FONTS if name in installed), None)
    if found:
        return found
    import glob

    for pattern in _FONT_GLOBS:
        for path in sorted(glob.glob(pattern, recursive=True)):
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError):
                continue
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


def render_charts(report: WeeklyReport, lang: str, renderer: Renderer) -> list[Chart]:
    if lang == "zh" and cjk_font() is None:
        log.warning("no CJK font installed (e.g. fonts-wqy-microhei): charts use English labels")
        lang = "en"
    labels = renderer.labels("report_labels", lang)
    family = [cjk_font()] if lang == "zh" else ["DejaVu Sans"]
    with matplotlib.rc_context({"font.family": family, "axes.unicode_minus": False,
                                "axes.spines.top": False, "axes.spines.right": False}):
        return [_trend(report, labels), _stages(report, labels), _ratings(report, labels)]


def _figure(height: float) -> Figure:
    fig = Figure(figsize=(7.2, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _fit(fig: Figure, *, left: float = 0.6, bottom: float = 0.35, top: float = 0.4, right: float = 0.15) -> None:
    """Margins in inches, fixed: each chart is drawn once.  (``bbox_inches="tight"`` draws it twice,
    once to measure, and that was a third of the report's chart time.)"""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)


def _width(fig: Figure, texts: list[str], size: float) -> float:
    """Inches the widest of ``texts`` takes at ``size`` points in the current font."""
    renderer = fig.canvas.get_renderer()
    font = FontProperties(size=size)
    return max((renderer.get_text_width_height_descent(t, font, ismath=False)[0] for t in texts), default=0) / DPI


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _trend(report: WeeklyReport, labels: dict[str, str]) -> Chart:
    fig = _figure(3.0)
    # The widest y tick label: the largest figure with one digit more (the axis may round up).
    top = max((max(w.received, w.closed, w.open_at_end) for w in report.trend), default=0)
    _fit(fig, left=0.2 + _width(fig, [f"{top}0"], 10))
    ax = fig.subplots()
    weeks = [w.label[-3:] for w in report.trend]
    x = range(len(weeks))
    ax.bar([i - 0.2 for i in x], [w.received for w in report.trend], width=0.4, label=labels["trend_received"],
           color=COLOURS["received"])
    ax.bar([i + 0.2 for i in x], [w.closed for w in report.trend], width=0.4, label=labels["trend_closed"],
           color=COLOURS["closed"])
    ax.plot(list(x), [w.open_at_end for w in report.trend], marker="o", color=COLOURS["open"],
            label=labels["trend_open"])
    ax.set_xticks(list(x), weeks)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # tickets: whole numbers
    ax.set_title(labels["trend_title"], fontsize=11)
    ax.legend(frameon=False, fontsize=8, ncols=3)
    return Chart("trend@report", "trend.png", _png(fig), labels["trend_alt"], labels["trend_title"])


def _stages(report: WeeklyReport, labels: dict[str, str]) -> Chart:
    fig = _figure(2.6)
    stages = list(report.open_by_stage)
    _fit(fig, left=0.2 + _width(fig, [labels[f"stage_{s}"] for s in stages], 10), right=0.5)
    ax = fig.subplots()
    counts = [report.open_by_stage[s] for s in stages]
    ax.barh([labels[f"stage_{s}"] for s in stages], counts, color=COLOURS["bar"])
    for i, n in enumerate(counts):
        ax.text(n, i, f" {n}", va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set_title(labels["stages_title"], fontsize=11)
    return Chart("stages@report", "stages.png", _png(fig), labels["stages_alt"], labels["stages_title"])


def _ratings(report: WeeklyReport, labels: dict[str, str]) -> Chart:
    fig = _figure(2.6)
    _fit(fig, left=0.45 + _width(fig, [f"{max(report.csat_distribution.values(), default=0)}0"], 10))
    ax = fig.subplots()
    scores = [1, 2, 3, 4, 5]
    counts = [report.csat_distribution[s] for s in scores]
    ax.bar([str(s) for s in scores], counts, color=COLOURS["rating"])
    ax.set_ylim(0, max(counts) * 1.1 or 1)  # a week without ratings still shows an axis from 0
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(labels["ratings_axis"])
    ax.set_title(labels["ratings_title"], fontsize=11)
    return Chart("ratings@report", "ratings.png", _png(fig), labels["ratings_alt"], labels["ratings_title"])
