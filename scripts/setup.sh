#!/usr/bin/env bash
# Idempotent set-up of a fresh machine: a virtualenv in .venv with the project and its dependencies.
# Usage: bash scripts/setup.sh [--test]   (--test also installs what the test suite needs: Chromium,
# PostgreSQL's server binaries for the store tests)
# The second run does nothing unless pyproject.toml changed (a stamp holds its hash).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
VENV="${EMPATHY_VENV:-.venv}"
WANT_TEST=0
[[ "${1:-}" == "--test" ]] && WANT_TEST=1

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setup: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi

STAMP="$VENV/.empathy-installed"
HASH="$(sha256sum pyproject.toml | cut -c1-16)"
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$HASH" ]]; then
  echo "setup: installing empathy-router and its dependencies (first time: 4-6 minutes)"
  # pip (not uv/poetry) so that torch comes from the CPU wheel on local disk, not a CUDA build.
  "$VENV/bin/pip" install -q -e ".[cpu,dev,postgres]"
  # PyPI's torchvision/torchaudio/torchcodec are CUDA builds: they break `import transformers`
  # and `from vllm import LLM` on CPU. Text models need none of them.
  "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  echo "$HASH" > "$STAMP"
fi

apt_install() {  # $1: Debian package, $2: what for
  echo "setup: installing Debian's $1 for $2"
  local SUDO=""; [[ "$(id -u)" != 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$1" >/dev/null
}
if [[ "$WANT_TEST" == 1 ]] && ! command -v chromium >/dev/null; then
  apt_install chromium "the browser tests"
fi
# The store tests start a throwaway PostgreSQL cluster (initdb/pg_ctl of /usr/lib/postgresql/*/bin).
if [[ "$WANT_TEST" == 1 ]] && ! command -v initdb >/dev/null \
    && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  apt_install postgresql "the store tests on PostgreSQL"
fi
echo "setup: ready ($VENV)"
