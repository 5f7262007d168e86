#!/usr/bin/env bash
# Create (or reuse) .venv with reprokit and its pinned dependencies. Idempotent: a stamp file records
# the hash of pyproject.toml + constraints.txt, and the install reruns only when either changes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-test,e2e}
stamp="$VENV/.reprokit-stamp"
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)-$EXTRAS
if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "bootstrap: installing reprokit[$EXTRAS] into $VENV (pinned by constraints.txt)" >&2
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
"$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[$EXTRAS]"
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "$want" > "$stamp"
# The browser test drives Debian's Chromium (Playwright's own browser download is not used).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
  echo "bootstrap: installing Debian's chromium for the end-to-end test" >&2
  apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)
fi
