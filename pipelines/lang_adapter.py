"""`lang_adapter`: trains the MAD-X language adapter of one language by masked language modelling, base model frozen.

Reads: unlabeled text in the language (`--text-source bundle`: every task file of the data bundle in that language,
deduplicated, the evaluation texts of the studied tasks left out; or a Hugging Face corpus online, see
`components.corpus`), and the base model: a registered name or folder, or the `model/` encoder of a FINISHED full
`intermediate` run (`--init-run-id`: the full_then_madx method needs language adapters trained for that encoder).
Writes: `adapters/lang_<lang>/` (the adapter: bottleneck + invertible, `seq_bn_inv`), `heads/lang_<lang>/` (its MLM
head, without the word embeddings it shares with the base model) and `corpus/composition.json`; params: the corpus's
size and composition, what it left out of each studied task (`corpus_excluded_items/<task>`: per protocol, the split
and items an evaluation scores, which `evaluate` checks against what it scores), `lang_reduction_factor`, trainable
and total parameter counts; metric `train/mlm/loss`; the corpus as the dataset input `corpus-<text source>-<lang>`
and the adapter as a LoggedModel pointing at `adapters/` and `heads/`.
"""

from pipelines.options import command, echo_run

main = command("lang_adapter", __doc__, "pipelines.lang_adapter:run")
if __name__ == "__main__":
    main()  # before the imports below, so that --help and argument errors answer without loading torch or mlflow

import json
import tempfile
from pathlib import Path

from transformers import AutoConfig

from components import tracking
from components.adapters import LangAdapterConfig, bottleneck_size, lang_adapter_name, train_language_adapter
from components.corpus import build_corpus, check_language_code, evaluation_protocols, studied_tasks
from components.errors import XstiltsInputError
from components.models import load_pretrained, load_tokenizer, resolve_model
from components.methods import check_upstream, get_method
from components.model_registry import check_max_length
from components.adapter_runs import base_model_label


def run(lang: str, model: str, init_run_id: str, lang_reduction_factor: float, text_source: str, max_texts: int,
        exclude_eval_of: str, protocol: str, **config_values) -> None:
    run_id = run_lang_adapter(lang, model, init_run_id, text_source, max_texts, exclude_eval_of, protocol,
                              LangAdapterConfig(reduction_factor=lang_reduction_factor, **config_values))
    echo_run("lang_adapter", run_id)


def run_lang_adapter(lang: str, model_name: str, init_run_id: str, text_source: str, max_texts: int,
                     exclude_eval_of: str, protocol: str, config: LangAdapterConfig) -> str:
    """Builds the corpus, trains and logs the language adapter of `lang`; returns the run id."""
    check_language_code(lang)
    check_max_length(config.max_length, model_name)
    resolved = resolve_model(model_name)
    if max_texts < 0:
        raise XstiltsInputError(f"max_texts must be 0 (all) or a positive cap, got {max_texts}")
    studied, protocols = studied_tasks(exclude_eval_of), evaluation_protocols(protocol)
    params = {"lang": lang, "model": resolved.name, "init_run_id": init_run_id, "text_source": text_source,
              "max_texts": max_texts, "exclude_eval_of": exclude_eval_of, "protocol": protocol, **config.as_params()}
    with tracking.phase_run("lang_adapter", params, tags={"lang": lang, "adapter": lang_adapter_name(lang)}) as run_id:
        if init_run_id:
            upstream = tracking.finished_run(init_run_id, "intermediate").data.params
            check_upstream(get_method("full_then_madx"), init_run_id, upstream.get("method", "full"))
            tracking.log_params({"intermediate_task": upstream.get("task", "")})
        corpus = build_corpus(lang, text_source, studied, protocols, max_texts).capped(max_texts, config.seed)
        tracking.log_params(corpus.params())
        tracking.log_dataset("corpus", text_source, lang, f"{len(corpus.texts)} texts", corpus.texts, "training")
        tracking.log_text(json.dumps(corpus.composition(), indent=1), f"{tracking.CORPUS_ARTIFACT}/composition.json")
        with tempfile.TemporaryDirectory(prefix="xstilts-lang-adapter-") as work_dir:
            base = (resolve_model(str(tracking.download_model(init_run_id, "intermediate", Path(work_dir))))
                    if init_run_id else resolved)
            hidden_size = load_pretrained(AutoConfig, base).hidden_size
            tracking.log_params({"bottleneck": bottleneck_size(hidden_size, config.reduction_factor, "lang adapter")})
            result = train_language_adapter(base, base_model_label(resolved.name, init_run_id),
                                            load_tokenizer(resolved), corpus.texts, lang, config, Path(work_dir),
                                            callbacks=[tracking.MetricsCallback("mlm", lang)])
            tracking.log_dir(result.adapter_dir, f"{tracking.ADAPTERS_ARTIFACT}/{result.info.name}")
            tracking.log_dir(result.head_dir, f"{tracking.HEADS_ARTIFACT}/{result.info.name}")
            tracking.log_model_entity([f"{tracking.ADAPTERS_ARTIFACT}/{result.info.name}",
                                       f"{tracking.HEADS_ARTIFACT}/{result.info.name}"])
            tracking.log_params({"trainable_params": result.trainable_params, "total_params": result.total_params})
    return run_id
