#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, slow end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/ruff check .
.venv/bin/mypy .
status=0
.venv/bin/python -m pytest "$@" || status=$?
# The browser test's screenshots, so CI logs say where to find them.
for shot in test-artifacts/ui/*.png; do
    if [ -e "$shot" ]; then echo "UI screenshot: $PWD/$shot"; fi
done
exit "$status"
