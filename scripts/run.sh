#!/usr/bin/env bash
# Set up (idempotent), prepare whatever is missing (base model, quick pipeline) and serve the chatbot.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/empathy up "$@"
