#!/usr/bin/env bash
# Make sure the JupyterLab browser test (tests/lab) has a Chromium, without downloading a
# browser: a no-op when one is found; as root with apt-get, install Debian's chromium;
# otherwise print the command that fixes it and fail. Never a silent skip.
set -euo pipefail

found() { printf 'browser for the JupyterLab test: %s\n' "$1"; exit 0; }

if [[ -n "${MLOPS_BROWSER:-}" ]]; then
  path=$(command -v "$MLOPS_BROWSER") || { echo "error: MLOPS_BROWSER=$MLOPS_BROWSER is not an executable" >&2; exit 1; }
  found "$path"
fi
for name in chromium chromium-browser google-chrome google-chrome-stable; do
  if path=$(command -v "$name"); then found "$path"; fi
done
# Playwright's own Chromium, if someone installed it (`playwright install chromium`).
for path in "${PLAYWRIGHT_BROWSERS_PATH:-${HOME:-}/.cache/ms-playwright}"/chromium-*/chrome-linux*/chrome; do
  if [[ -x "$path" ]]; then found "$path"; fi
done

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "no Chromium found: installing Debian's chromium package (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  found "$(command -v chromium)"
fi

cat >&2 <<'EOF'
error: no Chromium for the JupyterLab browser test (make test-lab, part of make test).
Install one, then rerun:
  sudo apt-get install chromium            # Debian/Ubuntu (or run make as root: it installs it)
  .venv/bin/playwright install chromium    # Playwright's own build, where downloads are allowed
or set MLOPS_BROWSER to a Chromium or Chrome executable.
EOF
exit 1
