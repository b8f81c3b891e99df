#!/usr/bin/env bash
# The source-language study behind RESULTS.md (configs/source-language.yaml), end to end on 2 CPU cores:
# 1. tune studies of the PAN-X learning rates the grid reads (`tuned: none`): full fine-tuning, and MAD-X on an
#    English language adapter trained at the study's adapter settings;
# 2. the plan (an estimate from the store's finished runs), then the study grid through `main`;
# 3. RESULTS.md and results/*.png, written from the store by `python -m analysis.results`.
# Rerunning it reuses every finished step and trial. The store is outputs/source-language/mlflow.db unless
# MLFLOW_TRACKING_URI names another one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export PATH="$PWD/.venv/bin:$PATH"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p outputs/source-language
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///$PWD/outputs/source-language/mlflow.db}"
experiment=source-language
journal=outputs/source-language/journal.log
start=$SECONDS
# The target settings of configs/source-language.yaml: each tune study is the cell the grid reads.
cell=(-P task=panx -P model=multilingual-e5-small -P epochs=1 -P max_train_examples=1000 -P max_select_examples=500
      -P max_length=64 -P n_trials=4 -P workers=2 -P storage="$journal")
mlflow run . -e tune --env-manager local --experiment-name "$experiment" "${cell[@]}" -P method=full \
    -P space="{lr: {low: 5.0e-5, high: 2.0e-3, log: true}}"
mlflow run . -e lang_adapter --env-manager local --experiment-name "$experiment" -P lang=en -P max_steps=30 \
    -P max_texts=2000 -P batch_size=32 -P max_length=64 -P exclude_eval_of=panx | tee outputs/source-language/en-adapter.log
english_adapter=$(grep -o 'lang_adapter run [0-9a-f]\{32\}' outputs/source-language/en-adapter.log | tail -1 | cut -d' ' -f3)
mlflow run . -e tune --env-manager local --experiment-name "$experiment" "${cell[@]}" -P method=madx \
    -P task_reduction_factor=2 -P lang_adapter_run_id="$english_adapter" \
    -P space="{lr: {low: 2.0e-4, high: 5.0e-3, log: true}}"
mlflow run . -e main --env-manager local --experiment-name "$experiment" -P config=configs/source-language.yaml \
    -P plan=true > outputs/source-language/plan.txt
tail -4 outputs/source-language/plan.txt
# One step at a time, on both cores: two at once need a tracking server in front of the store (docs/scale-out.md).
mlflow run . -e main --env-manager local --experiment-name "$experiment" -P config=configs/source-language.yaml
echo "study wall time: $((SECONDS - start)) s"
python -m analysis.results --experiment "$experiment" --config configs/source-language.yaml \
    --plan-file outputs/source-language/plan.txt --journal "$journal"
