#!/usr/bin/env bash
# Make sure the production endpoint (mlops_helpers/endpoint.py and its tests) has nginx,
# from the system's packages: a no-op when one is found; as root with apt-get, install
# Debian's nginx-light; otherwise print the command that fixes it and fail.
set -euo pipefail

for path in "$(command -v nginx || true)" /usr/sbin/nginx /usr/local/sbin/nginx; do
  if [[ -n "$path" && -x "$path" ]]; then printf 'nginx for the endpoint: %s\n' "$path"; exit 0; fi
done

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "no nginx found: installing Debian's nginx-light package (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
  printf 'nginx for the endpoint: %s\n' "$(command -v nginx || echo /usr/sbin/nginx)"
  exit 0
fi

cat >&2 <<'MSG'
error: no nginx for the production endpoint (part of make test).
Install it, then rerun:
  sudo apt-get install nginx-light         # Debian/Ubuntu (or run make as root: it installs it)
  brew install nginx                       # macOS
MSG
exit 1
