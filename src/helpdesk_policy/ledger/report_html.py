"""The compliance report as one self-contained HTML page, charts drawn server-side in inline SVG.

:func:`render_html` returns a page that needs nothing else to be viewed:
the CSS is inline, the charts are inline SVG drawn here, and there is no
script, no font, image or style sheet to fetch, and no URL at all (the
page can be mailed, archived and opened offline; a strict
``Content-Security-Policy`` meta tag says so to the browser too). Every text
that comes from the ledger (actions, channels, teams…: attacker-influenced)
is HTML-escaped.

Charts, with stable ids for tests and style sheets:

* ``#chart-levels-by-action``: a stacked bar per action, decisions by level
  (segments ``rect.seg.level-<level>``);
* ``#chart-rates-<dimension>`` for ``action``, ``channel``, ``target_type``
  and ``team``: per value, a bar per rate (``rect.bar.rate-<rate>``:
  first-contact resolution, compliance, exceptions applied, degraded), the
  bar's length the rate; a rate of nothing (n/a) draws no bar.

Each rates chart's fills differ from the other rates charts' by a few units
of one RGB channel: invisible to the eye, but a screenshot tells which
chart drew (the tests check each chart's colours in a real browser).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from ..levels import Level
from .base import format_timestamp
from .report import DIMENSIONS, LEVELS, ComplianceReport, Metrics, Rate, render_text

__all__ = ["LEVEL_COLOURS", "RATE_COLOURS", "RATES", "MAX_CHART_ROWS", "rate_colour", "render_html"]

#: The fill of each level's segments (ladder order: green to red; grey for unknown).
LEVEL_COLOURS: dict[str, str] = {
    Level.SELF_SERVICE.value: "#2e7d32",
    Level.STEP_UP.value: "#1565c0",
    Level.MANAGER_APPROVAL.value: "#f9a825",
    Level.CALLBACK.value: "#ef6c00",
    Level.DENY.value: "#b71c1c",
    "unknown": "#827717",
}

#: The rates charted per dimension: (key, label, Metrics attribute).
RATES: tuple[tuple[str, str, str], ...] = (
    ("fcr", "first-contact resolution", "first_contact_resolution"),
    ("compliance", "compliance", "compliance"),
    ("exceptions", "exceptions applied", "exceptions_applied"),
    ("degraded", "degraded decisions", "degraded"),
)

#: The base fill (R, G, B) of each rate's bars.
RATE_COLOURS: dict[str, tuple[int, int, int]] = {
    "fcr": (0, 137, 123),
    "compliance": (94, 53, 177),
    "exceptions": (216, 27, 96),
    "degraded": (109, 76, 65),
}

#: Rows a chart shows at most; the tables below it list every value.
MAX_CHART_ROWS = 40

_LABEL_W = 200
_PLOT_W = 520
_COUNT_W = 300
_WIDTH = _LABEL_W + _PLOT_W + _COUNT_W
_BAR_H = 20
_ROW_H = 28
_RATE_BAR_H = 11
_RATE_ROW_H = 4 * (_RATE_BAR_H + 2) + 12
_TOP = 8
_LABEL_CHARS = 30


def rate_colour(dimension: str, rate: str) -> str:
    """The fill of ``rate``'s bars in ``dimension``'s chart: the rate's colour, shifted by the chart's index."""
    r, g, b = RATE_COLOURS[rate]
    shift = 3 * DIMENSIONS.index(dimension)
    blue = b + shift if b + shift <= 255 else b - shift
    return f"#{r:02x}{g:02x}{blue:02x}"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _label(text: str) -> str:
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def _rows(groups: dict[str, Metrics]) -> tuple[list[tuple[str, Metrics]], int]:
    items = list(groups.items())
    return items[:MAX_CHART_ROWS], max(0, len(items) - MAX_CHART_ROWS)


def _more(hidden: int, y: int) -> str:
    if not hidden:
        return ""
    return f'<text x="{_LABEL_W}" y="{y + 14}" class="more">and {hidden} more (see the tables)</text>'


def _levels_chart(report: ComplianceReport) -> str:
    rows, hidden = _rows(report.by["action"])
    top = max((m.decisions for _, m in rows), default=0)
    height = _TOP + _ROW_H * max(1, len(rows)) + (20 if hidden else 0) + 4
    parts = [f'<svg id="chart-levels-by-action" class="chart" role="img" width="{_WIDTH}" height="{height}" '
             f'viewBox="0 0 {_WIDTH} {height}" aria-labelledby="chart-levels-by-action-title">',
             '<title id="chart-levels-by-action-title">Decisions by level, per action</title>']
    if not rows or top == 0:
        parts.append(f'<text x="{_LABEL_W}" y="{_TOP + 16}" class="empty">no decisions</text>')
    for i, (value, m) in enumerate(rows):
        y = _TOP + i * _ROW_H
        parts.append(f'<g class="row" data-value="{_e(value)}">')
        parts.append(f'<text x="{_LABEL_W - 8}" y="{y + 15}" class="label" text-anchor="end">{_e(_label(value))}</text>')
        x = float(_LABEL_W)
        for level in LEVELS:
            count = m.decisions_by_level.get(level, 0)
            if not count:
                continue
            width = _PLOT_W * count / top
            parts.append(f'<rect class="seg level-{level}" x="{x:.2f}" y="{y}" width="{width:.2f}" height="{_BAR_H}" '
                         f'fill="{LEVEL_COLOURS[level]}"><title>{_e(value)}: {count} {level}</title></rect>')
            x += width
        parts.append(f'<text x="{x + 6:.2f}" y="{y + 15}" class="count">{m.decisions}</text>')
        parts.append("</g>")
    parts.append(_more(hidden, _TOP + _ROW_H * len(rows)))
    parts.append("</svg>")
    legend = "".join(f'<span class="key"><span class="swatch" style="background:{LEVEL_COLOURS[lv]}"></span>'
                     f"{_e(lv)}</span>" for lv in LEVELS)
    return "\n".join(parts) + f'\n<p class="legend">{legend}</p>'


def _rates_chart(report: ComplianceReport, dimension: str) -> str:
    rows, hidden = _rows(report.by[dimension])
    height = _TOP + _RATE_ROW_H * max(1, len(rows)) + (20 if hidden else 0) + 4
    chart_id = f"chart-rates-{dimension}"
    parts = [f'<svg id="{chart_id}" class="chart" role="img" width="{_WIDTH}" height="{height}" '
             f'viewBox="0 0 {_WIDTH} {height}" aria-labelledby="{chart_id}-title">',
             f'<title id="{chart_id}-title">Rates per {_e(dimension)}</title>']
    if not rows:
        parts.append(f'<text x="{_LABEL_W}" y="{_TOP + 16}" class="empty">nothing to show</text>')
    for i, (value, m) in enumerate(rows):
        y0 = _TOP + i * _RATE_ROW_H
        parts.append(f'<g class="row" data-value="{_e(value)}">')
        parts.append(f'<text x="{_LABEL_W - 8}" y="{y0 + 16}" class="label" text-anchor="end">{_e(_label(value))}</text>')
        # A hairline at 0 and at 100 %: the scale of every bar.
        parts.append(f'<line x1="{_LABEL_W}" x2="{_LABEL_W}" y1="{y0}" y2="{y0 + 4 * (_RATE_BAR_H + 2)}" class="axis"/>')
        parts.append(f'<line x1="{_LABEL_W + _PLOT_W}" x2="{_LABEL_W + _PLOT_W}" y1="{y0}" '
                     f'y2="{y0 + 4 * (_RATE_BAR_H + 2)}" class="axis"/>')
        for j, (key, label, attr) in enumerate(RATES):
            rate: Rate | None = getattr(m, attr)
            y = y0 + j * (_RATE_BAR_H + 2)
            text = "n/a" if rate is None else str(rate)
            if rate is not None and rate.value is not None and rate.numerator:
                width = _PLOT_W * rate.value
                parts.append(f'<rect class="bar rate-{key}" x="{_LABEL_W}" y="{y}" width="{width:.2f}" '
                             f'height="{_RATE_BAR_H}" fill="{rate_colour(dimension, key)}">'
                             f"<title>{_e(value)}: {_e(label)} {_e(text)}</title></rect>")
            parts.append(f'<text x="{_LABEL_W + _PLOT_W + 8}" y="{y + 9}" class="value">{_e(label)}: {_e(text)}</text>')
        parts.append("</g>")
    parts.append(_more(hidden, _TOP + _RATE_ROW_H * len(rows)))
    parts.append("</svg>")
    legend = "".join(f'<span class="key"><span class="swatch" style="background:{rate_colour(dimension, key)}">'
                     f"</span>{_e(label)}</span>" for key, label, _ in RATES)
    return "\n".join(parts) + f'\n<p class="legend">{legend}</p>'


def _cell(value: object) -> str:
    return f"<td>{_e('n/a' if value is None else value)}</td>"


def _table(report: ComplianceReport, dimension: str) -> str:
    headers: Sequence[str] = (dimension, "decisions", *LEVELS, "degraded", "exceptions applied",
                              "expired-exc. decisions", "exceptions past expiry", "tickets",
                              "first-contact resolution", "compliance", "overdue obligations",
                              "verification failures", "closes refused")
    rows = [("(all)", report.overall), *report.by[dimension].items()]
    body = []
    for name, m in rows:
        cells = [f'<th scope="row">{_e(name)}</th>', _cell(m.decisions),
                 *(_cell(m.decisions_by_level.get(lv, 0)) for lv in LEVELS),
                 _cell(m.degraded), _cell(m.exceptions_applied), _cell(m.decisions_with_expired_exception),
                 _cell(m.exceptions_past_expiry), _cell(m.tickets), _cell(m.first_contact_resolution),
                 _cell(m.compliance), _cell(m.overdue_obligations), _cell(m.verification_failures),
                 _cell(m.close_refusals)]
        body.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in headers)
    return (f'<div class="scroll"><table id="table-{_e(dimension)}"><caption>By {_e(dimension)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #1a1a1a; background: #ffffff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
p.meta { color: #444; margin: 0 0 8px; } p.note { background: #fff8e1; padding: 6px 10px; margin: 6px 0; }
svg.chart { display: block; background: #ffffff; }
svg text { font-size: 12px; fill: #1a1a1a; } svg text.more, svg text.empty { fill: #555; font-style: italic; }
svg text.value { font-size: 10px; } svg line.axis { stroke: #bbbbbb; stroke-width: 1; }
p.legend { margin: 4px 0 0 200px; font-size: 12px; }
div.scroll { overflow-x: auto; }
span.key { margin-right: 14px; white-space: nowrap; }
span.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; vertical-align: middle; }
table { border-collapse: collapse; margin: 10px 0 22px; font-size: 12px; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border: 1px solid #d0d0d0; padding: 3px 6px; } td { text-align: right; }
th[scope=row] { text-align: left; font-weight: normal; white-space: nowrap; }
th[scope=col] { font-weight: 600; } td { white-space: nowrap; }
details pre { font-size: 11px; overflow-x: auto; }
"""


def render_html(report: ComplianceReport, *, title: str = "helpdesk-policy compliance report") -> str:
    """The report as one self-contained HTML page (no script, no URL, nothing fetched when viewed)."""
    charts = [_levels_chart(report)]
    for dim in DIMENSIONS:
        charts.append(f"<h2>Rates per {_e(dim)}</h2>\n{_rates_chart(report, dim)}")
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in report.notes)
    tables = "\n".join(_table(report, dim) for dim in DIMENSIONS)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{_e(title)}</h1>
<p class="meta">source: {_e(report.source)} · now: {_e(format_timestamp(report.now))} · events: {report.events}
 · unreadable: {report.unreadable} · decisions: {report.overall.decisions} · tickets: {report.overall.tickets}</p>
{notes}
<h2>Decisions by level, per action</h2>
{charts[0]}
{"".join(charts[1:])}
<h2>Tables</h2>
{tables}
<details><summary>As text</summary><pre>{_e(render_text(report))}</pre></details>
</body>
</html>
"""
