"""The proof of concept's summary: the headline facts, the charts, and the one-page HTML
file of notebook 09 (built with :mod:`mlops_helpers.workbook.page`), from the matrix that
:mod:`mlops_helpers.proof.faults` measured."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_helpers.proof.faults import PATHS, HandDeployment, times
from mlops_helpers.workbook import page

SUMMARY_PAGE = "summary.html"
# The verdict cell of each record: green when caught, red when missed.
_STYLE = "td.caught { background: #e3f4e3; } td.missed { background: #fbe3e0; }\n"
_INTRO = (
    "The same faults, injected into the same data, through the manual path (the hand "
    "steps of notebooks 01 and 02) and the automated path (pipeline, contract, gate, smoke "
    "test before promotion). Every number on this page was measured in one run."
)
_FOOTNOTE = (
    "Caught on the manual path means an exception a person would notice. Restored: "
    "after recovery, production holds exactly what it held without the fault."
)
_HEAD = ["fault", "path", "verdict", "caught by", "detect", "recover", "manual steps",
         "restored", "what happened"]  # fmt: skip


def headline(
    frame: pd.DataFrame,
    repro: pd.DataFrame,
    hand: HandDeployment,
    deploy_seconds: float,
    run_seconds: float,
) -> dict[str, str]:
    """The page's headline, one sentence per measured fact, automated first."""
    by_path = frame.groupby("path")
    caught, total = by_path["caught"].sum(), by_path.size()
    steps, restored = by_path["manual_steps"].sum(), by_path["restored"].sum()

    def both(values, fmt="{}") -> str:
        return ", ".join(f"{p} {fmt.format(values[p])}" for p in reversed(PATHS))

    return {
        "faults caught": both({p: f"{caught[p]} of {total[p]}" for p in PATHS}),
        "manual steps to recover from every fault": both(steps),
        "back to exactly the state before the fault": both(
            {p: f"{restored[p]} of {total[p]}" for p in PATHS}
        ),
        "the same model when retrained on the same data": both(
            {p: "yes" if repro.loc[p, "identical"] else "no" for p in PATHS}
        ),
        "deployment lead time": (
            f"automated {deploy_seconds:.1f} s in one call (gate, serve, smoke test, promote); "
            f"manual {hand.seconds:.1f} s of computer time over {len(hand.checklist)} steps "
            "a person performs, with none of those checks"
        ),
        "this whole run took": f"{run_seconds:.1f} s",
    }


COLORS = {"manual": "tab:orange", "automated": "tab:blue"}


def summary_figure(frame: pd.DataFrame):
    """Three charts: faults caught per path, seconds to detect and recover per fault (log
    scale), manual steps per path."""
    import matplotlib.pyplot as plt

    fig, (ax_caught, ax_time, ax_steps) = plt.subplots(
        1, 3, figsize=(14, 4.6), gridspec_kw={"width_ratios": [1, 2.2, 1]}
    )
    caught = frame.groupby("path")["caught"].sum().reindex(PATHS)
    total = frame.groupby("path").size().reindex(PATHS)
    bars = ax_caught.bar(PATHS, caught, color=[COLORS[p] for p in PATHS])
    ax_caught.bar_label(bars, labels=[f"{c} of {t}" for c, t in zip(caught, total, strict=True)])
    ax_caught.set(ylabel="faults caught", title="Faults caught", ylim=(0, total.max() * 1.15))

    seconds = times(frame)
    y = np.arange(len(seconds))
    series = [
        ("automated detect s", "automated: detect", COLORS["automated"]),
        ("automated recover s", "automated: recover", "lightskyblue"),
        ("manual recover s", "manual: recover by hand", COLORS["manual"]),
    ]
    height = 0.8 / len(series)
    for i, (column, label, color) in enumerate(series):
        values = seconds[column].where(seconds[column] > 0)  # 0 or never: no bar
        ax_time.barh(y + (i - 1) * height, values, height, color=color, label=label)
    ax_time.set_yticks(y, seconds.index, fontsize=8)
    ax_time.invert_yaxis()
    ax_time.set(xscale="log", xlabel="seconds (log scale)")
    ax_time.set_title("Time to detect and recover (the manual path detects nothing)")
    ax_time.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)

    steps = frame.groupby("path")["manual_steps"].sum().reindex(PATHS)
    bars = ax_steps.bar(PATHS, steps, color=[COLORS[p] for p in PATHS])
    ax_steps.bar_label(bars)
    ax_steps.set(
        ylabel="manual steps to recover, whole matrix",
        title="Manual steps",
        ylim=(0, steps.max() * 1.15),
    )
    fig.tight_layout()
    return fig


def figure_png(fig) -> str:
    """A figure as a base64 PNG, to embed in a page without external files."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def summary_html(frame: pd.DataFrame, figure, facts: dict[str, str], title: str) -> str:
    """The one-page summary: headline facts, the matrix with its times, the charts."""
    rows = []
    for r in frame.itertuples(index=False):
        verdict = "caught" if r.caught else "missed"
        rows.append([
            r.fault, r.path, page.Cell(verdict, verdict), r.check, _seconds(r.detect_s),
            _seconds(r.recover_s), r.manual_steps, "yes" if r.restored else "no", r.outcome,
        ])  # fmt: skip
    charts = page.png_image(
        figure_png(figure), "faults caught, time to detect and recover, manual steps"
    )
    return page.page(
        title,
        page.paragraph(_INTRO),
        page.section("Headline", page.facts(facts)),
        page.section("Per fault", page.table(_HEAD, rows), page.paragraph(_FOOTNOTE)),
        page.section("Charts", charts),
        style=_STYLE,
    )


def _seconds(value: float) -> str:
    return "never" if math.isnan(value) else f"{value:.3f} s"


def write_summary(
    run_dir: Path, frame: pd.DataFrame, figure, facts: dict[str, str], title: str
) -> Path:
    """Write the summary page into the run folder; return its path."""
    return page.write_page(Path(run_dir) / SUMMARY_PAGE, summary_html(frame, figure, facts, title))
