"""The machinery that runs the workbook: what no lesson is about.

The modules at the top of ``mlops_helpers`` are the lessons a notebook sends a learner to
read (data, etl, validation, training, tracking, registry, serving, monitoring). This
sub-package runs them: the ``mlops-workbook`` command (:mod:`.cli`), the curriculum
(:mod:`.curriculum`), headless execution with papermill (:mod:`.execute`), its report
(:mod:`.report`) and the refresh of committed outputs (:mod:`.refresh`), declared
pipelines (:mod:`.pipeline`) and batches on Dask (:mod:`.batch`) read from YAML
(:mod:`.specs`), the server processes the lessons start (:mod:`.processes`), one writer
per workspace (:mod:`.workspace_lock`), ``doctor`` and warm starts for headless runs
(:mod:`.warmstart`).
"""
