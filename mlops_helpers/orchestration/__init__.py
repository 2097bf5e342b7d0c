"""The daily pipeline on an existing orchestrator, Dagster: partitions, a schedule, a drift
sensor and retries over the same step functions the pipeline's notebooks call.

- :mod:`.definitions`: ``defs``, the assets ``published_day``, ``trained_model`` and
  ``champion``, the job ``daily``, ``daily_schedule`` and ``drift_sensor`` (:mod:`.sensor`);
- :mod:`.settings`: ``pipelines/orchestrator.yaml``, checked before anything runs;
- :mod:`.home`: ``DAGSTER_HOME`` in the workspace, telemetry off, the retry lesson's
  injected failures;
- :mod:`.backfill`: ``mlops-workbook backfill``.

``mlops-workbook orchestrator`` starts the Dagster UI and daemon on 127.0.0.1. Importing
this package imports no Dagster.
"""

from __future__ import annotations

import os


def doctor_check() -> list[tuple[str, bool, str, str]]:
    """``(name, ok, detail, fix)`` for ``mlops-workbook doctor``: the definitions load and
    validate, and DAGSTER_HOME is usable. Creates nothing."""
    from mlops_helpers import config
    from mlops_helpers.orchestration import home, settings

    results = []
    path = settings.default_path()
    try:
        import dagster as dg

        from mlops_helpers.orchestration.definitions import build_definitions

        loaded = settings.load_settings(path)
        defs = build_definitions(loaded)
        dg.Definitions.validate_loadable(defs)
        job = defs.resolve_job_def("daily")
        results.append(
            (
                "definitions",
                True,
                f"Dagster {dg.__version__}: job daily over {len(job.asset_layer.executable_asset_keys)} "
                f"assets from {loaded.start_day}, schedule and sensor ({config.show_path(path)})",
                "",
            )
        )
    except Exception as exc:  # noqa: BLE001 - doctor reports, it does not crash
        results.append(
            (
                "definitions",
                False,
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                f"fix {config.show_path(path)} (or {settings.SETTINGS_ENV})",
            )
        )
    try:
        where = home.check_home()
        armed = home.injected_failures()
        state = "exists" if where.is_dir() else "created on first use"
        note = (
            "; injected failures armed: " + ", ".join(f"{a} (first {n})" for a, n in armed.items())
            if armed
            else ""
        )
        ok = not where.is_dir() or os.access(where, os.W_OK | os.X_OK)
        results.append(
            (
                "dagster_home",
                ok,
                f"{config.show_path(where)} ({state}{', yours' if where.is_dir() else ''}, "
                f"telemetry off){note}",
                "" if ok else f"make it writable: chmod u+rwx {config.shell_path(where)}",
            )
        )
    except home.DagsterHomeError as exc:
        results.append(("dagster_home", False, str(exc), "see the message"))
    return results
