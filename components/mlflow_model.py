"""The MLflow model of a `target` run: a pyfunc "model from code" (MLflow 3) that MLflow runs when the model is loaded.

Its model_config names the run (`components.trained_models.mlflow_model_config`); `load_context` downloads that run's
own artifacts (`model/`, or an adapter run's base model, task adapter, head and language adapters) and loads them as
`evaluate` does, so no second copy of the weights is logged. `predict` takes a DataFrame of inputs
(`components.trained_models.INPUT_COLUMNS`) and returns one prediction per row. The xstilts checkout must be
importable where the model is loaded (its environment: requirements.txt).

This file is not imported by the suite: `components.tracking.log_model_entity` logs its path.
"""

import tempfile
from pathlib import Path

import mlflow
import pandas as pd

from components import tracking, trained_models
from components.errors import XstiltsInputError
from components.methods import METHODS
from components.tasks import get_task


class TrainedRunModel(mlflow.pyfunc.PythonModel):
    """Predicts with the trained model of the `target` run named by model_config `run_id`."""

    def load_context(self, context) -> None:
        config = context.model_config
        run_id = config[trained_models.RUN_KEY]
        run_params = tracking.finished_run(run_id, "target").data.params
        self.spec = get_task(run_params["task"])
        self.max_length = int(run_params["max_length"])
        self.batch_size = int(config[trained_models.BATCH_SIZE_KEY])
        self.default_lang = config[trained_models.LANG_KEY]
        method = METHODS[run_params.get("method", "full")]
        langs = [lang.strip() for lang in config[trained_models.LANGS_KEY].split(",") if lang.strip()]
        plan = trained_models.lang_adapter_choice(method, run_params, langs,
                                                  config[trained_models.LANG_ADAPTER_RUNS_KEY],
                                                  config[trained_models.FALLBACK_KEY])
        # Only language adapters tie a model to the languages it was loaded for.
        self.langs = set(plan) if method.lang_adapters else None
        with tempfile.TemporaryDirectory(prefix="xstilts-mlflow-model-") as work_dir:
            self.model, self.tokenizer, self.use_language = trained_models.load_trained_model(
                run_id, run_params, self.spec, plan, Path(work_dir))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list:
        rows = model_input.to_dict(orient="records")
        if self.langs is not None:
            asked = {str(row.get(trained_models.LANG_COLUMN) or self.default_lang) for row in rows}
            if not asked <= self.langs:
                raise XstiltsInputError(
                    f"no language adapter loaded for {', '.join(sorted(asked - self.langs))}: load the model with "
                    f"model_config {{'{trained_models.LANGS_KEY}': ..., '{trained_models.LANG_ADAPTER_RUNS_KEY}': ..., "
                    f"'{trained_models.FALLBACK_KEY}': ...}} as evaluate takes langs, lang_adapter_runs and "
                    "lang_adapter_fallback")
        return trained_models.predict_rows(self.spec, self.model, self.tokenizer, self.use_language, rows,
                                           self.default_lang, self.max_length, self.batch_size)


mlflow.models.set_model(TrainedRunModel())
