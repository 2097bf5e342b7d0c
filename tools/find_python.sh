#!/usr/bin/env bash
# Print the path of the newest Python that pyproject.toml admits (3.13, 3.12, then 3.11):
# first a pythonX.Y on PATH that runs, then pyenv's versions. Prints nothing and fails when
# none is found. `tools/find_python.sh --all` prints every one found, newest first.
#   make install                      # uses the first line of this
#   make install PYTHON=/path/to/python3.12   # overrides it
set -uo pipefail

MINORS=(13 12 11)  # keep in step with requires-python in pyproject.toml
root="${PYENV_ROOT:-${HOME:-/nonexistent}/.pyenv}"

runs_as() {  # print the interpreter's own path if it runs, is 3.$2 and can make a venv
  "$1" -c "import sys, venv, ensurepip; ok = sys.version_info[:2] == (3, $2); ok and print(sys.executable); sys.exit(not ok)" 2>/dev/null
}

find_minor() {
  local minor=$1 path
  if path=$(command -v "python3.$minor" 2>/dev/null) && runs_as "$path" "$minor"; then return; fi
  # pyenv's versions, newest patch release first (its shims fail for versions not selected)
  for path in $(ls -d "$root"/versions/3."$minor".*/bin/python3."$minor" 2>/dev/null | sort -V -r); do
    if runs_as "$path" "$minor"; then return; fi
  done
  return 1
}

found=0
for minor in "${MINORS[@]}"; do
  if find_minor "$minor"; then
    found=1
    [[ "${1:-}" == "--all" ]] || exit 0
  fi
done
[[ $found == 1 ]]
