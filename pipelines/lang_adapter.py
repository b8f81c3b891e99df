"""`lang_adapter`: trains the MAD-X language adapter of one language by masked language modelling, base model frozen.

Reads: unlabeled text in the language (`--text-source bundle`: every task file of the data bundle in that language,
deduplicated, the evaluation texts of the studied tasks left out; or a Hugging Face corpus online, see
`components.corpus`), and the base model: a registered name or folder, or the `model/` encoder of a FINISHED full
`intermediate` run (`--init-run-id`: the full_then_madx method needs language adapters trained for that encoder).
Writes: `adapters/lang_<lang>/` (the adapter: bottleneck + invertible, `seq_bn_inv`), `heads/lang_<lang>/` (its MLM
head, without the word embeddings it shares with the base model) and `corpus/composition.json`; params: the corpus's
size and composition, what it left out of each studied task (`corpus_excluded_items/<task>`: per protocol, the split
and items an evaluation scores, which `evaluate` checks against what it scores), `lang_reduction_factor`, trainable
and total parameter counts; metric `train/mlm/loss`.
"""

import json
import tempfile
from pathlib import Path

import click
from transformers import AutoConfig

from components import tracking
from components.adapters import LangAdapterConfig, bottleneck_size, lang_adapter_name, train_language_adapter
from components.corpus import (ALL_TASKS, AUTO_PROTOCOL, BUNDLE_SOURCE, build_corpus, check_language_code,
                               evaluation_protocols, studied_tasks)
from components.errors import XstiltsInputError
from components.models import load_pretrained, load_tokenizer, resolve_model
from components.methods import check_upstream, get_method
from components.training import PRECISIONS
from pipelines.cli import DEFAULT_MODEL, echo_run, entry_point
from pipelines.methods import base_model_label

_DEFAULTS = LangAdapterConfig()


@click.command()
@click.option("--lang", required=True, help="Language code (ISO 639-1 where one exists: sw, yo, qu, ht, ...).")
@click.option("--model", "model_name", default=DEFAULT_MODEL, show_default=True,
              help="Registered model name or a local Hugging Face folder.")
@click.option("--init-run-id", default="",
              help="A FINISHED full intermediate run whose encoder is the base model (method full_then_madx).")
@click.option("--reduction-factor", type=float, default=_DEFAULTS.reduction_factor, show_default=True,
              help="Hidden size / bottleneck width; must divide the hidden size.")
@click.option("--max-steps", type=int, default=_DEFAULTS.max_steps, show_default=True)
@click.option("--lr", type=float, default=_DEFAULTS.lr, show_default=True)
@click.option("--batch-size", type=int, default=_DEFAULTS.batch_size, show_default=True)
@click.option("--max-length", type=int, default=_DEFAULTS.max_length, show_default=True,
              help="Texts longer than this many tokens are cut.")
@click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default=_DEFAULTS.precision, show_default=True)
@click.option("--text-source", default=BUNDLE_SOURCE, show_default=True,
              help="bundle, or hf:<dataset>:<config with {lang}>[:<field>] online, e.g. "
                   "hf:wikimedia/wikipedia:20231101.{lang}:text.")
@click.option("--max-texts", type=int, default=0, show_default=True,
              help="Cap on training texts (a seeded sample of the bundle's; the first N lines of a Hub corpus, "
                   "which needs one); 0 = all.")
@click.option("--exclude-eval-of", default=ALL_TASKS, show_default=True,
              help="Tasks whose evaluation texts in the language are left out: all, none, or names separated by "
                   "commas.")
@click.option("--protocol", default=AUTO_PROTOCOL, show_default=True,
              help="The protocols the studied tasks are evaluated under, separated by commas (each decides which "
                   "texts they score; auto is resolved per task).")
@entry_point
def main(lang: str, model_name: str, init_run_id: str, reduction_factor: float, text_source: str, max_texts: int,
         exclude_eval_of: str, protocol: str, **config_values) -> None:
    run_id = run_lang_adapter(lang, model_name, init_run_id, text_source, max_texts, exclude_eval_of, protocol,
                              LangAdapterConfig(reduction_factor=reduction_factor, **config_values))
    echo_run("lang_adapter", run_id)


def run_lang_adapter(lang: str, model_name: str, init_run_id: str, text_source: str, max_texts: int,
                     exclude_eval_of: str, protocol: str, config: LangAdapterConfig) -> str:
    """Builds the corpus, trains and logs the language adapter of `lang`; returns the run id."""
    check_language_code(lang)
    resolved = resolve_model(model_name)
    if max_texts < 0:
        raise XstiltsInputError(f"--max-texts must be 0 (all) or a positive cap, got {max_texts}")
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
            tracking.log_params({"trainable_params": result.trainable_params, "total_params": result.total_params})
    return run_id


if __name__ == "__main__":
    main()
