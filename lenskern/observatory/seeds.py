"""The seeds' tables, reproduced with lenskern's algorithms added.

The seed study timed four rounds: Match 1 (W at seed-1core, one core), Match
2 (W at seed-gpu, 128 cores against an A100), Bonus rounds 1 and 2 (the
curvature matrix at the same sizes). Here each round is the asv benchmark of
its kernels at its tier, on one thread and on all cores, printed in the seeds'
format (implementation, time, ratio to the fastest) and drawn as a bar chart.
"""

from __future__ import annotations

import math
from pathlib import Path

from lenskern.observatory.report import Row, rows, table

#: round name -> (tier, kernels). Match rounds time W and its offset table
#: (the seeds' "compact" algorithms are the table plus an expansion).
ROUNDS = {
    "Match 1 (1 core)": ("seed-1core", ("w_tilde", "w_offsets")),
    "Bonus round 1 (1 core)": ("seed-1core", ("curvature_matrix",)),
    "Match 2 (all cores)": ("seed-gpu", ("w_tilde", "w_offsets")),
    "Bonus round 2 (all cores)": ("seed-gpu", ("curvature_matrix",)),
}


def plot(title: str, found: list[Row], settings: list[str], path: Path) -> None:
    """A horizontal bar chart of the rows' times, log scale, one bar per setting."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a cluster node
    import matplotlib.pyplot as plt

    labels = [r.implementation for r in found]
    height = 0.8 / max(len(settings), 1)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) * max(len(settings), 1) + 1.5))
    for n, setting in enumerate(settings):
        seconds = [r.seconds.get(setting, math.nan) for r in found]
        ax.barh([i + n * height for i in range(len(labels))], seconds, height=height,
                label="1 thread" if setting == "1" else f"{setting} threads")  # fmt: skip
    ax.set_yticks([i + height * (len(settings) - 1) / 2 for i in range(len(labels))], labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("seconds per call (asv median)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def tables(by_threads_by_tier: dict[str, dict[str, list]], out: Path) -> str:
    """Markdown for every round whose tier has results; a PNG beside each table."""
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    for title, (tier, kernels) in ROUNDS.items():
        by_threads = by_threads_by_tier.get(tier)
        if not by_threads:
            continue
        settings = sorted(by_threads, key=lambda t: (t != "1", t))
        for kernel in kernels:
            found = rows(by_threads, kernel, tier)
            if not found:
                continue
            heading = f"{title}: {kernel} at {tier}"
            slug = "".join(c if c.isalnum() else "-" for c in heading.lower()).strip("-")
            png = out / f"{slug}.png"
            plot(heading, found, settings, png)
            text = table(heading, found, settings, profile=False)  # the seeds' columns: time and ratio
            sections.append(text + f"\n\n![{heading}]({png.name})")
    text = "\n\n".join(sections)
    (out / "seeds.md").write_text(text + "\n")
    return text
