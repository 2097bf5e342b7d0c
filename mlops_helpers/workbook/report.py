"""What a run of the workbook shows afterwards: a plain-text summary and an HTML report
linking each executed notebook."""

from __future__ import annotations

from pathlib import Path

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
    import html

    rows = []
    for r in results:
        link = ""
        if r.output is not None and r.output.is_file():
            page = r.page or render_html(r.output)
            link = f'<a href="{html.escape(page)}">{html.escape(r.notebook)}</a>'
        rows.append(
            f"<tr class={r.status}><td>{link or html.escape(r.notebook)}</td><td>{r.status}</td>"
            f"<td>{r.seconds:.1f}</td><td>{html.escape(r.error)}</td></tr>"
        )
    index = run_dir / "index.html"
    index.write_text(
        f"<!doctype html><meta charset=utf-8><title>workbook run {run_dir.name}</title>"
        "<style>body{font-family:sans-serif}td,th{padding:4px 8px;border-bottom:1px solid #ddd}"
        f".failed{{background:#fdd}}</style><h1>workbook run {html.escape(run_dir.name)}</h1>"
        "<table><tr><th>notebook</th><th>status</th><th>seconds</th><th>error</th></tr>"
        + "".join(rows)
        + "</table>\n"
    )
    return index
