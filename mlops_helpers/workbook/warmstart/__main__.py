"""``python -m mlops_helpers.workbook.warmstart KEY OWNER``: a template process."""

import sys

from mlops_helpers.workbook.warmstart.template import main

if __name__ == "__main__":
    main(sys.argv[1:])
