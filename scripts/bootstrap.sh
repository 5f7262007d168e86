#!/usr/bin/env bash
# Create (or reuse) .venv with reprokit and its pinned dependencies. Idempotent: a stamp file records
# the hash of pyproject.toml + constraints.txt, and the install reruns only when either changes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-test,e2e}
stamp="$VENV/.reprokit-stamp"
uv_install() {  # uv does not read pip's configuration: hand it pip's indexes, wheel folders, constraints, CA file
  local args=() line key value v
  while IFS= read -r line; do
    key=${line%%=*}; value=${line#*=}; value=${value//\'/}
    case ${key##*.} in
      index-url) args+=(--index-url "$value") ;;
      extra-index-url) for v in $value; do args+=(--extra-index-url "$v"); done ;;
      find-links) for v in $value; do args+=(--find-links "$v"); done ;;
      constraint) for v in $value; do args+=(--constraint "$v"); done ;;
      cert) export SSL_CERT_FILE="$value" ;;
    esac
  done < <("$VENV/bin/python" -m pip config list 2>/dev/null)
  # unsafe-best-match: like pip, take the best version any index offers (uv's default stops at the first index).
  # --compile-bytecode: like pip, write the .pyc files now; uv leaves them out by default, and where
  # PYTHONDONTWRITEBYTECODE is set no import writes them later, so every kernel would compile torch's modules
  # again (an `import torchvision` then takes 3.5 times as long).
  "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --compile-bytecode --index-strategy unsafe-best-match \
    "${args[@]}" -c constraints.txt -e ".[$EXTRAS]"
}
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)-$EXTRAS
if ! [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "bootstrap: installing reprokit[$EXTRAS] into $VENV (pinned by constraints.txt)" >&2
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  # uv installs the same pinned set about seven times faster than pip (the CUDA wheels of torch are ~4 GB
  # to unpack); pip stays the fallback wherever uv cannot be had, and only it needs a current pip.
  if "$VENV/bin/python" -m pip install -q -c constraints.txt uv && uv_install; then :
  else
    "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
    "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[$EXTRAS]"
  fi
  "$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
  echo "$want" > "$stamp"
fi
# tcmalloc for the training kernels a sweep starts (reprokit/experiments/allocator.py): faster CPU steps, the same numbers.
# Optional: without root or apt-get the kernels keep glibc's malloc.
has_tcmalloc() { "$VENV/bin/python" -c "import sys; from reprokit.experiments.allocator import tcmalloc_library as t; sys.exit(not t())"; }
if ! has_tcmalloc && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
  echo "bootstrap: installing Debian's libtcmalloc-minimal4 for the training kernels" >&2
  apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1 || (apt-get update -q >/dev/null \
    && apt-get install -y -q libtcmalloc-minimal4 >/dev/null) || echo "bootstrap: no tcmalloc; glibc's malloc stays" >&2
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
