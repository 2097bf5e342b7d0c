"""page: the workbook's three HTML pages (a run's report, a batch's index, the proof of
concept's summary) come from one builder: one head and style, text always escaped, a
failed row marked, links to the pages beside them, nothing fetched from elsewhere."""

from __future__ import annotations

import math

import pytest

from mlops_helpers import proof
from mlops_helpers.workbook import batch, page, report
from mlops_helpers.workbook.execute import NotebookResult

EXTERNAL = ("src='http", 'src="http', "<script", "<link", "url(")


def test_a_page_escapes_every_text_and_keeps_only_its_own_markup():
    text = page.page(
        "run <1> & co",
        page.paragraph("rows < 5"),
        page.section("Facts", page.facts({"a & b": "<b>bold?</b>"})),
        page.table(
            ["name", "link"],
            [page.Row(["<script>", page.link("x/report.html", "report <x>")], "failed")],
        ),
    )
    assert text.startswith("<!DOCTYPE html>") and text.endswith("</html>\n")
    assert "<title>run &lt;1&gt; &amp; co</title>" in text
    assert "<h1>run &lt;1&gt; &amp; co</h1>" in text
    assert "<p>rows &lt; 5</p>" in text and "<h2>Facts</h2>" in text
    assert "<li><b>a &amp; b</b>: &lt;b&gt;bold?&lt;/b&gt;</li>" in text
    assert '<tr class="failed"><td>&lt;script&gt;</td>' in text
    assert '<a href="x/report.html">report &lt;x&gt;</a>' in text
    assert not any(external in text for external in EXTERNAL)


def test_a_cell_can_carry_a_class_and_a_row_without_one_is_a_plain_tr():
    table = page.table(["verdict"], [[page.Cell("caught", "caught")], ["missed"]])
    assert '<tr><td class="caught">caught</td></tr>' in table
    assert "<tr><td>missed</td></tr>" in table
    assert table.count("<tr>") == 3  # the header and both rows


@pytest.fixture
def pages(tmp_path, monkeypatch) -> dict[str, str]:
    """The text of each of the three pages, each with one failed row whose error has markup."""
    monkeypatch.setenv("MLOPS_WORKBOOK_HOME", str(tmp_path / "ws"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    results = [
        NotebookResult("01_manual_etl", "ok", 1.0, page=""),
        NotebookResult("02_bad", "failed", 2.0, error="cell 3: ValueError: a < b"),
    ]
    run_page = report.write_report(results, run_dir).read_text()

    grid = batch.Batch("grid", tmp_path / "grid.yaml", [])
    batch.write_reports(
        grid,
        [
            batch.ItemResult("k1", "ok", 1.0, {"seed": 1}, "nb.ipynb", "nb.html"),
            batch.ItemResult("k2", "failed", 1.0, {"seed": 2}, error="x < y"),
        ],
    )
    batch_page = (grid.out_dir / "index.html").read_text()

    records = [
        proof.Record(f, p, p == "automated", "-", math.nan, 1.0, 1, True, "a < b")
        for f in proof.MATRIX
        for p in proof.PATHS
    ]
    summary_page = proof.summary_html(proof.matrix(records), _figure(), {"f": "v"}, "PoC")
    return {"run": run_page, "batch": batch_page, "summary": summary_page}


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, _ = plt.subplots(figsize=(1, 1))
    plt.close(fig)
    return fig


def test_the_three_pages_share_one_head_and_style(pages):
    heads = {name: text[: text.index("<title>")] for name, text in pages.items()}
    assert len(set(heads.values())) == 1, heads
    for text in pages.values():
        assert page.STYLE in text
        assert not any(external in text for external in EXTERNAL)


def test_each_page_escapes_its_errors_and_marks_what_failed(pages):
    assert "ValueError: a &lt; b" in pages["run"] and '<tr class="failed">' in pages["run"]
    assert "x &lt; y" in pages["batch"] and '<tr class="failed">' in pages["batch"]
    assert "a &lt; b" in pages["summary"] and '<td class="missed">missed</td>' in pages["summary"]


def test_the_batch_index_counts_items_and_links_each_executed_notebook(pages):
    assert "2 items, 1 ok" in pages["batch"]
    assert '<a href="k1/nb.html">notebook</a>' in pages["batch"]
    assert "<h1>batch grid</h1>" in pages["batch"]


def test_the_run_report_links_a_rendered_notebook(tmp_path):
    executed = tmp_path / "01_manual_etl.ipynb"
    executed.write_text("{}")
    result = NotebookResult("01_manual_etl", "ok", 1.0, executed, page="01_manual_etl.html")
    text = report.write_report([result], tmp_path).read_text()
    assert '<a href="01_manual_etl.html">01_manual_etl</a>' in text
