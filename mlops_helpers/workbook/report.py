"""What a run of the workbook shows afterwards: a plain-text summary and an HTML report
linking each executed notebook."""

from __future__ import annotations

from pathlib import Path

from mlops_helpers.workbook import page
from mlops_helpers.workbook.execute import NotebookResult


def summary_table(results: list[NotebookResult], wall: float | None = None) -> str:
    """A plain-text table: notebook, status, seconds; the sum, and the wall clock if given."""
    width = max([len(r.notebook) for r in results] + [8])
    lines = [f"{'notebook':<{width}}  {'status':<7}  {'seconds':>7}"]
    for r in results:
        lines.append(f"{r.notebook:<{width}}  {r.status:<7}  {r.seconds:7.1f}")
    total = sum(r.seconds for r in results)
    lines.append(f"{'total':<{width}}  {'':<7}  {total:7.1f}")
    if wall is not None:  # notebooks run side by side: the wall clock is what one waits
        lines.append(f"{'wall clock':<{width}}  {'':<7}  {wall:7.1f}")
    return "\n".join(lines)


def render_html(notebook: Path) -> str:
    """Render an executed notebook to HTML beside it; return the HTML file's name."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(notebook))
    target = notebook.with_suffix(".html")
    target.write_text(body)
    return target.name


def write_report(results: list[NotebookResult], run_dir: Path) -> Path:
    """Render each executed notebook to HTML and write ``index.html`` linking them."""
    rows = []
    for r in results:
        name: object = r.notebook
        if r.output is not None and r.output.is_file():
            name = page.link(r.page or render_html(r.output), r.notebook)
        rows.append(page.Row([name, r.status, f"{r.seconds:.1f}", r.error], r.status))
    title = f"workbook run {run_dir.name}"
    table = page.table(["notebook", "status", "seconds", "error"], rows)
    return page.write_page(run_dir / "index.html", page.page(title, table))
