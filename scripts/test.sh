#!/usr/bin/env bash
# Runs the whole test suite (unit tests on a tiny random model, integration tests on the offline encoder).
set -euo pipefail
cd "$(dirname "$0")/.."
# tests/test_browser.py drives Debian's Chromium (Playwright's own browser download cannot run here).
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
fi
bash scripts/setup_env.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
