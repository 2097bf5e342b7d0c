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

from mlops_helpers.proof.costs import Team, person_hours
from mlops_helpers.proof.faults import PATHS, HandDeployment, times
from mlops_helpers.workbook import page

SUMMARY_PAGE = "summary.html"
# The verdict cell of each record: green when caught, red when missed.
_STYLE = "td.caught { background: #e3f4e3; } td.missed { background: #fbe3e0; }\n"
_INTRO = (
    "The same faults, injected into the same data, through the manual path (the hand "
    "steps of notebooks 01 and 02), the careful manual path (the same steps with a diligent "
    "engineer's asserts) and the automated path (pipeline, contract, gate, smoke test "
    "before promotion). Every number on this page was measured in one run, except a "
    "person's hours, which are the team's own assumptions (the parameters)."
)
_FOOTNOTE = (
    "Caught on the manual path means an exception a person would notice; on the careful "
    "path, an exception or an assert. Recover (computer): the seconds the recovery steps "
    "ran; recover (person): the hours a person spends, assumed. Restored: after recovery, "
    "production holds exactly what it held without the fault."
)
_HEAD = ["fault", "path", "verdict", "caught by", "detect", "recover (computer)",
         "recover (person, assumed)", "manual steps", "restored", "what happened"]  # fmt: skip


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
    paths = [p for p in PATHS if p in total.index]

    def each(values, among=paths) -> str:
        return ", ".join(f"{p} {values[p]}" for p in reversed(among))

    return {
        "faults caught": each({p: f"{caught[p]} of {total[p]}" for p in paths}),
        "manual steps to recover from every fault": each(steps),
        "back to exactly the state before the fault": each(
            {p: f"{restored[p]} of {total[p]}" for p in paths}
        ),
        "the same model when retrained on the same data": each(
            {p: "yes" if repro.loc[p, "identical"] else "no" for p in repro.index},
            [p for p in paths if p in repro.index],
        ),
        "deployment lead time": (
            f"automated {deploy_seconds:.1f} s in one call (gate, serve, smoke test, promote); "
            f"manual {hand.seconds:.1f} s of computer time over {len(hand.checklist)} steps "
            "a person performs, with none of those checks"
        ),
        "this whole run took": f"{run_seconds:.1f} s",
    }


COLORS = {"manual": "tab:orange", "careful": "goldenrod", "automated": "tab:blue"}


def summary_figure(frame: pd.DataFrame, team: Team):
    """Four charts: faults caught per path; seconds to detect per fault (measured, log
    scale); a person's hours to recover from the whole matrix (assumed, from ``team``);
    manual steps to recover per path."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5), gridspec_kw={"width_ratios": [1, 1.6]})
    (ax_caught, ax_detect), (ax_steps, ax_hours) = axes
    paths = [p for p in PATHS if p in set(frame["path"])]
    colors = [COLORS[p] for p in paths]

    def bars(ax, values, labels, ylabel, title):
        drawn = ax.bar(paths, values, color=colors)
        ax.bar_label(drawn, labels=labels)
        ax.set(ylabel=ylabel, title=title, ylim=(0, max(values.max(), 1) * 1.18))

    caught = frame.groupby("path")["caught"].sum().reindex(paths)
    total = frame.groupby("path").size().reindex(paths)
    bars(ax_caught, caught, [f"{c} of {t}" for c, t in zip(caught, total, strict=True)],
         "faults caught", "Faults caught")  # fmt: skip

    seconds = times(frame)
    y = np.arange(len(seconds))
    detect = [p for p in paths if f"{p} detect s" in seconds]
    height = 0.8 / len(detect)
    for i, path in enumerate(detect):
        values = seconds[f"{path} detect s"]
        ax_detect.barh(y + (i - (len(detect) - 1) / 2) * height, values, height,
                       color=COLORS[path], label=path)  # fmt: skip
    ax_detect.set_yticks(y, seconds.index, fontsize=8)
    ax_detect.invert_yaxis()
    ax_detect.set(xscale="log", xlabel="computer seconds, measured (log scale); no bar: never")
    ax_detect.set_title("Time to detect a fault")
    ax_detect.legend(fontsize="small", loc="upper right")

    steps = frame.groupby("path")["manual_steps"].sum().reindex(paths)
    bars(ax_steps, steps, [str(v) for v in steps], "steps a person performs",
         "Manual steps to recover, whole matrix")  # fmt: skip

    hours = person_hours(frame, team).groupby(frame["path"]).sum().reindex(paths)
    bars(ax_hours, hours, [f"{h:g} h" for h in hours], "a person's hours (assumed)",
         f"Hours to recover, whole matrix: {team.hours_per_manual_recovery:g} h per hand "
         f"recovery, {team.hours_per_automated_recovery:g} h per automated one")  # fmt: skip
    ax_hours.title.set_fontsize(9)
    fig.tight_layout()
    return fig


def figure_png(fig) -> str:
    """A figure as a base64 PNG, to embed in a page without external files."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def summary_html(
    frame: pd.DataFrame, figure, facts: dict[str, str], title: str, team: Team | None = None
) -> str:
    """The one-page summary: headline facts, the matrix with its times, the charts. Without
    ``team`` a person's hours are not known, and the page says so ("not set")."""
    rows = []
    known = person_hours(frame, team) if team is not None else [math.nan] * len(frame)
    for r, hours in zip(frame.itertuples(index=False), known, strict=True):
        verdict = "caught" if r.caught else "missed"
        rows.append([
            r.fault, r.path, page.Cell(verdict, verdict), r.check, _seconds(r.detect_s),
            _seconds(r.recover_s), "not set" if math.isnan(hours) else f"{hours:g} h", r.manual_steps, "yes" if r.restored else "no",
            r.outcome,
        ])  # fmt: skip
    charts = page.png_image(
        figure_png(figure), "faults caught, time to detect, manual steps, hours to recover"
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
    run_dir: Path, frame: pd.DataFrame, figure, facts: dict[str, str], title: str, team: Team
) -> Path:
    """Write the summary page into the run folder; return its path."""
    html = summary_html(frame, figure, facts, title, team)
    return page.write_page(Path(run_dir) / SUMMARY_PAGE, html)
