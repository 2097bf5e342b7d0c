"""The orchestrator's bad input: a reversed, malformed or out-of-range backfill, a settings
value out of range, a UI port in use: exit 2 with the fix, before anything runs."""

from __future__ import annotations

import socket

import pytest

from mlops_helpers import config
from mlops_helpers.orchestration import settings as orchestrator_settings
from mlops_helpers.workbook import cli
from mlops_helpers.workbook.specs import SpecError


@pytest.fixture
def workspace(monkeypatch, tmp_path):
    ws = tmp_path / "ws"
    monkeypatch.setenv(config.HOME_ENV, str(ws))
    return ws


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("2026-01-09", "2026-01-05", "empty range: --from 2026-01-09 is after --to 2026-01-05"),
        ("2025-01-01", "2025-01-02", "2025-01-01"),
        ("2026-13-01", "2026-01-02", "--from: must be a day written YYYY-MM-DD"),
    ],
)
def test_a_bad_backfill_range_exits_2_before_anything_runs(capsys, workspace, first, last, message):
    try:
        code = cli.main(["backfill", "--from", first, "--to", last])
    except SystemExit as exc:  # argparse's own refusal of a malformed day
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert not workspace.exists(), "nothing may run or be written for a bad range"


@pytest.mark.parametrize(
    ("line", "replacement", "message"),
    [
        ("  psi_threshold: 0.2", "  psi_threshold: 0.0", "psi_threshold must be"),
        ("window: 3", "window: 0", "window must be"),
        ("retries: 2", "retries: -1", "retries must be"),
    ],
)
def test_a_setting_out_of_range_names_the_file_and_line(tmp_path, line, replacement, message):
    committed = orchestrator_settings.default_path().read_text()
    assert line in committed
    bad = tmp_path / "orchestrator.yaml"
    bad.write_text(committed.replace(line, replacement, 1))
    number = next(i for i, t in enumerate(bad.read_text().splitlines(), 1) if replacement in t)
    with pytest.raises(SpecError) as err:
        orchestrator_settings.load_settings(bad)
    assert str(err.value).startswith(f"{bad}:{number}: ") and message in str(err.value)


def test_a_bad_settings_file_exits_2_from_the_cli(capsys, workspace, tmp_path):
    bad = tmp_path / "orchestrator.yaml"
    committed = orchestrator_settings.default_path().read_text()
    bad.write_text(committed.replace("  psi_threshold: 0.2", "  psi_threshold: 9"))
    code = cli.main(
        ["backfill", "--from", "2026-01-05", "--to", "2026-01-06", "--settings", str(bad)]
    )
    err = capsys.readouterr().err
    assert code == 2 and f"{bad}:" in err and "psi_threshold" in err
    assert not workspace.exists()


def test_the_orchestrator_refuses_a_port_in_use(capsys, workspace):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cli.main(["orchestrator", "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and f"port {port}" in err and "already in use" in err
    assert not workspace.exists()
