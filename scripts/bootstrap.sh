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
if ! [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "bootstrap: installing reprokit[$EXTRAS] into $VENV (pinned by constraints.txt)" >&2
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
  "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[$EXTRAS]"
  "$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
  echo "$want" > "$stamp"
fi
# Debian packages for the end-to-end tests, checked on every call (an up-to-date .venv says nothing about them).
# The browser test drives Debian's Chromium (Playwright's own browser download is not used). `make main` needs
# neither and skips them (E2E_PACKAGES=0): its 15 minutes include this bootstrap.
[[ ${E2E_PACKAGES:-1} == 0 ]] && exit 0
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
  echo "bootstrap: installing Debian's chromium for the end-to-end test" >&2
  apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)
fi
# The SLURM end-to-end test starts a one-node cluster (tests/slurm_cluster.py) from Debian's slurm-wlm and munge.
slurm_missing() {  # the daemons live in sbin, which a non-login PATH may lack
  local b; for b in slurmctld slurmd munged sbatch srun; do PATH="$PATH:/usr/sbin:/sbin" command -v $b >/dev/null || return 0; done
  return 1
}
if slurm_missing && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
  echo "bootstrap: installing Debian's slurm-wlm and munge for the SLURM end-to-end test" >&2
  apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null)
fi
