"""lenskern's own front page of the published site.

asv's front page is a grid of history thumbnails: after one run each holds a
single point, and a newcomer sees empty boxes. This page comes first
(``index.html``; asv's own pages move to ``asv.html``, whose routes are all
``#`` fragments): per machine, its newest commit's results, and per kernel
and tier the table of implementations (time on each thread setting and its
ratio to the fastest, the call's own peak memory, first call, error, peer
rows marked, lenskern's best against the best peer) beside a bar chart of
the times on a log scale, each implementation linked to its history graph.
Static HTML and inline SVG, no script: it renders offline as it is.

asv's history graphs open on a log axis (:func:`edit_asv_pages`): on a
linear one the slowest implementation flattens every other to zero; and its
grid's thumbnails draw a commit's point, not only lines between commits.
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from pathlib import Path

from lenskern import problems, registry
from lenskern.observatory import report, results, suite
from lenskern.observatory.offline import OfflineError

#: Where asv's own front page goes once this one takes ``index.html``.
ASV_PAGE = "asv.html"
#: The thread settings' colours in the charts (1 thread, then all threads).
COLOURS = {"1": "#4c72b0", "all": "#dd8452"}
BAR = 11  # px, one bar's height
LABEL = 190  # px, the implementation names' column
WIDTH = 420  # px, the bars' span


def _setting(threads: str) -> str:
    return "1 thread" if threads == "1" else f"{threads} threads"


def tiers(by_threads: dict[str, list[results.Measurement]]) -> list[str]:
    """The tiers the kernels' timings were taken at, in the registry's order of sizes."""
    found = {m.params[1] for ms in by_threads.values() for m in ms
             if m.method == "time_call" and len(m.params) == 2 and m.value is not None}  # fmt: skip
    order = list(problems.PRESETS)
    return sorted(found, key=lambda t: (order.index(t) if t in order else len(order), t))


def _decades(low: float, high: float) -> tuple[int, int]:
    return math.floor(math.log10(low)), max(math.ceil(math.log10(high)), math.floor(math.log10(low)) + 1)


def chart(rows: list[report.Row], settings: list[str]) -> str:
    """An inline SVG: one bar per implementation and thread setting, time on
    a log axis (a decade a gridline), so a 345 ms and a 20 us
    implementation are both readable in one picture."""
    times = [r.seconds[t] for r in rows for t in settings if not math.isnan(r.seconds.get(t, math.nan))]
    if not times:
        return ""
    first, last = _decades(min(times), max(times))
    span = last - first

    def x(seconds: float) -> float:
        return LABEL + WIDTH * (math.log10(seconds) - first) / span

    group = BAR * len(settings) + 6
    height = group * len(rows) + 28
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{LABEL + WIDTH + 20}" '
             f'height="{height}" role="img" aria-label="times, log scale">']  # fmt: skip
    for decade in range(first, last + 1):
        left = x(10.0**decade)
        parts.append(f'<line x1="{left:.1f}" y1="0" x2="{left:.1f}" y2="{height - 18}" stroke="#ddd"/>')
        parts.append(f'<text x="{left:.1f}" y="{height - 4}" font-size="10" text-anchor="middle">'
                     f"{html.escape(report.time_text(10.0**decade).replace('.000', ''))}</text>")  # fmt: skip
    for i, row in enumerate(rows):
        top = i * group + 2
        parts.append(f'<text x="{LABEL - 6}" y="{top + BAR * len(settings) / 2 + 4:.1f}" font-size="11" '
                     f'text-anchor="end">{html.escape(row.implementation)}</text>')  # fmt: skip
        for j, threads in enumerate(settings):
            seconds = row.seconds.get(threads, math.nan)
            if math.isnan(seconds):
                continue
            width = x(seconds) - LABEL
            parts.append(f'<rect class="bar" x="{LABEL}" y="{top + j * BAR}" width="{width:.1f}" '
                         f'height="{BAR - 2}" fill="{COLOURS.get(threads, "#55a868")}">'
                         f"<title>{html.escape(row.implementation)}, {_setting(threads)}: "
                         f"{html.escape(report.time_text(seconds))}</title></rect>")  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


def _history(kernel: str, method: str = "time_call") -> str:
    """asv's graph of a kernel's benchmark, on its default log axis."""
    # "likelihood", no kernel: lk.Likelihood's class has a module of its own
    area = suite.area(kernel) if any(kernel in ks for ks in suite.AREAS.values()) else kernel
    return f"{ASV_PAGE}#{area}.{suite.class_name(kernel)}.{method}"


def section(kernel: str, tier: str, found: list[report.Row], settings: list[str]) -> str:
    """One kernel at one tier: its table and its chart."""
    head = "".join(f"<th>time, {_setting(t)} (ratio)</th>" for t in settings)
    fastest = {t: min((r.seconds.get(t, math.inf) for r in found), default=math.nan) for t in settings}
    lines = []
    for row in found:
        cells = "".join(f"<td>{html.escape(report.ratio_text(row.seconds.get(t, math.nan), fastest[t]))}</td>"
                        for t in settings)  # fmt: skip
        first = "n/a" if math.isnan(row.first_call_seconds) else report.time_text(row.first_call_seconds)
        error = "n/a" if math.isnan(row.max_relative_error) else f"{row.max_relative_error:.1e}"
        peer = registry.peer(row.implementation)
        name = html.escape(row.implementation) + (f' <span class="peer">peer: {html.escape(peer)}</span>'
                                                  if peer else "")  # fmt: skip
        lines.append(f"<tr><td>{name}</td>{cells}<td>{report.bytes_text(row.peak_bytes)}</td>"
                     f"<td>{first}</td><td>{error}</td></tr>")  # fmt: skip
    against = [html.escape(line.replace("**", "").replace("`", "")) for t in settings
               if (line := report.peer_line(found, t))]  # fmt: skip
    return (
        f'<section class="kernel" id="{html.escape(kernel)}-{html.escape(tier)}">'
        f"<h3>{html.escape(kernel)} <small>tier {html.escape(tier)} · "
        f'<a href="{html.escape(_history(kernel))}">history</a></small></h3>'
        f'<div class="pair"><table><thead><tr><th>implementation</th>{head}<th>kernel peak memory</th>'
        f"<th>first call</th><th>max rel. error</th></tr></thead><tbody>{''.join(lines)}</tbody></table>"
        f"{chart(found, settings)}</div>"
        + "".join(f'<p class="against">{line}</p>' for line in against)
        + "</section>"
    )


def machine_section(results_dir: Path, machine: str) -> str:
    """A machine's newest commit: every kernel's section at every tier it ran."""
    newest = results.latest(results_dir, machine)
    if newest is None:
        return ""
    commit, date = newest
    by_threads = report.results_by_threads(results_dir, machine, commit)
    settings = sorted(by_threads, key=lambda t: (t != "1", t))
    when = datetime.fromtimestamp(date / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC") if date else "?"
    sections = []
    for tier in tiers(by_threads):
        for kernel in registry.NAMES + ("likelihood",):
            found = report.rows(by_threads, kernel, tier)
            if found:
                sections.append(section(kernel, tier, found, settings))
    legend = " ".join(f'<span class="key" style="background:{COLOURS.get(t, "#55a868")}"></span>{_setting(t)}'
                      for t in settings)  # fmt: skip
    return (
        f'<h2 id="machine-{html.escape(machine)}">{html.escape(machine)}</h2>'
        f'<p class="meta">commit <code>{commit[:8]}</code> of {when}; {len(sections)} tables; '
        f"asv medians of one run; bars on a log scale: {legend}</p>" + "".join(sections)
    )


STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1400px; color: #222; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; font-size: 12px; margin-right: 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: 2px 6px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
.pair { display: flex; flex-wrap: wrap; align-items: flex-start; }
.peer { color: #a33; font-size: 10px; }
.meta, .against { color: #555; font-size: 12px; }
.key { display: inline-block; width: 10px; height: 10px; margin: 0 3px 0 8px; }
h3 small { font-weight: normal; font-size: 12px; }
"""


def page(results_dir: Path) -> str:
    """The whole front page, every machine with results in ``results_dir``."""
    found = [text for m in results.machines(results_dir) if (text := machine_section(results_dir, m))]
    body = "".join(found) or "<p>No results yet: <code>python -m lenskern.observatory run</code>.</p>"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>lenskern benchmarks</title>'
        f"<style>{STYLE}</style></head><body><h1>lenskern benchmarks</h1>"
        f'<nav><a href="{ASV_PAGE}">history graphs (asv)</a><a href="{ASV_PAGE}#/regressions">regressions</a>'
        f'<a href="{ASV_PAGE}#/summarylist">benchmark list</a></nav>{body}</body></html>'
    )


def write(html_dir: Path, results_dir: Path) -> Path:
    """Move asv's front page to ``asv.html`` and write this one as ``index.html``."""
    html_dir = Path(html_dir)
    asv_index, front = html_dir / "index.html", html_dir / ASV_PAGE
    if not asv_index.is_file():
        raise FileNotFoundError(f"{html_dir} has no index.html; run `asv publish` first")
    if "airspeed velocity" in asv_index.read_text():  # asv's, not ours from an earlier publish
        asv_index.replace(front)
    asv_index.write_text(page(results_dir))
    return asv_index


#: Edits to asv 0.6's published scripts, each applied exactly once or not
#: at all. The graph page reads its y-axis scale from the URL, linear when
#: the URL names none, and its log button writes none when switched off: log
#: becomes the default and "linear" a scale the URL can name. The grid's
#: thumbnails draw lines only, so a benchmark with one commit looks empty:
#: they draw each point too, below the frame.
ASV_EDITS = {
    "graphdisplay.js": (
        ("update_state_url({'y-axis-scale': log_scale ? ['log']: []});",
         "update_state_url({'y-axis-scale': log_scale ? ['log']: ['linear']});"),
        ("        if (params['y-axis-scale']) {\n",
         "        if (params['y-axis-scale'] === undefined) {\n"
         "            params['y-axis-scale'] = ['log'];  /* lenskern: log by default */\n"
         "        }\n"
         "        if (params['y-axis-scale']) {\n"),
    ),
    "summarygrid.js": (
        ("                            lineWidth: 2\n                        },\n",
         "                            lineWidth: 2\n                        },\n"
         "                        points: {show: true, radius: 2},  /* lenskern: one commit shows */\n"),
        # headroom above the highest point, which would sit on the frame
        ("                        ticks: [],\n                        min: 0\n",
         "                        ticks: [],\n                        min: 0,\n"
         "                        autoscaleMargin: 0.25\n"),
    ),
}  # fmt: skip


def edit_asv_pages(html_dir: Path) -> None:
    """Apply :data:`ASV_EDITS` to the published site (twice is harmless).

    Raises
    ------
    OfflineError
        If a file is not asv's as the edits know it (another asv version):
        loudly, rather than publish a site half edited.
    """
    for name, edits in ASV_EDITS.items():
        path = Path(html_dir) / name
        text = path.read_text()
        if "/* lenskern: " in text:
            continue
        for old, new in edits:
            if text.count(old) != 1:
                raise OfflineError(f"{name}: asv's code is not as lenskern's edit expects: {old!r}")
            text = text.replace(old, new)
        path.write_text(text)
