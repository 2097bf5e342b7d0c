"""``python -m mlops_helpers.workbook.lab [jupyter lab options]``: JupyterLab with warm kernels
(``make lab`` runs it in the notebooks folder).

It is ``jupyter lab`` in every way, except that the kernels it starts are forked from a
template process that has already imported pandas, scikit-learn, MLflow and matplotlib
(:mod:`mlops_helpers.workbook.warmstart`): a notebook is ready to run in about half a second
instead of spending 3 to 4 s on its first imports. The templates belong to this
JupyterLab and end when it ends. ``MLOPS_WORKBOOK_WARM_KERNELS=0`` (or a system other than
Linux) gives kernels started the usual way.
"""

from __future__ import annotations

import sys


def main() -> int:
    from mlops_helpers.workbook import warmstart

    warmstart.enable_here()
    from jupyterlab.labapp import main as lab_main

    return lab_main() or 0


if __name__ == "__main__":
    sys.exit(main())
