"""The task registry: one frozen spec per task, in one place.

Facts follow ../shared/docs/benchmarks.md (XTREME `evaluate.py`, XTREME-R additions, jiant's X-STILTs guide).
Paths are relative to the data root and follow the layout google-research/xtreme's download script leaves;
`{lang}` is substituted. Code is keyed by `TaskType`; a spec only holds data. `components.task_types.check_registry`
(run when that module is imported) checks that every name a spec holds (file format, type, metrics, scorers)
resolves to code.

Hub-only tasks (MNLI, QQP, SQuAD v1.1/v2, HellaSwag: not in ../shared/data) name their Hugging Face dataset and where
its schema was read (`hub_schema_source`); tests/hub_fixtures.py writes fixtures in those schemas.
"""

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from components.errors import XstiltsInputError
from components.settings import DATA_ROOT_ENV, data_root

NO_INTERMEDIATE = "none"  # the intermediate arm, and `intermediate_task` param, of a run without intermediate task


class TaskType(str, Enum):
    PAIR_CLASSIFICATION = "pair_classification"
    SINGLE_CLASSIFICATION = "single_classification"
    MULTIPLE_CHOICE = "multiple_choice"
    TOKEN_CLASSIFICATION = "token_classification"
    EXTRACTIVE_QA = "extractive_qa"
    RETRIEVAL = "retrieval"  # evaluated straight from an encoder, no task training (Tatoeba, BUCC)
    DUAL_ENCODER_RETRIEVAL = "dual_encoder_retrieval"  # trained on English question/answer pairs (LAReQA, Mewsli-X)


@dataclass(frozen=True)
class DevSplit:
    """The "dev-split" protocol for a task whose English training set is not available offline.

    The labeled English dev pool is divided into groups of items, and whole groups are dealt out in order of their
    first item: to training until it holds `train` items, then to the English selection set until it holds `select`,
    the rest to evaluation in every language. XNLI and PAWS-X dev files are line-aligned translations, so the same
    item indices hold in every language and no evaluated item is seen in any language during training.

    Without `group_by` every item is a group of its own (a plain cut). With it, items that share a string in any of the
    `group_by` fields (in either field) belong to one group, transitively, so that no text straddles training and
    evaluation: XNLI lists three hypotheses per premise (`text_a`); PAWS-X builds several pairs from one sentence, in
    either position (`text_a`, `text_b`).
    """

    train: int
    select: int
    group_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskSpec:
    """Everything xstilts knows about one task.

    Attributes:
        name: XTREME-style id (`xnli`, `panx`, ...).
        task_type: selects preprocessing, head, decoding and metric code.
        metrics: metric names on a 0-100 scale; the first is the headline metric used for selection.
        langs: evaluation languages (XTREME-R lists where the task is in XTREME-R), `en` included where scored.
        files: split -> path pattern(s) under the data root; several patterns are concatenated in order. The key
            `candidates` names the candidate pool of a dual-encoder task that has a file of its own (Mewsli-X).
        file_format: key of the reader in `components.data`.
        labels: the closed label set of classification and tagging tasks, in head order.
        label_aliases: spellings in the files mapped to `labels` (ANLI writes `e`/`n`/`c`).
        train_sources: tasks whose English train split trains this task, in order (XNLI trains on MNLI;
            XCOPA on SIQA, then COPA). Empty when the task trains on its own English train split;
            None for tasks evaluated without task training.
        withheld_label_splits: splits whose labels the benchmark blanks in the XTREME layout: refused, never scored.
        dev_split: the offline protocol when no English train split is available.
        hf_dataset: (dataset id, config pattern) for the Hugging Face `datasets` fallback; `{lang}` is substituted.
        hf_splits: our split name -> the Hub dataset's split name.
        hf_id_lang_prefixes: where one Hub split holds every language (no config per language): each language's id
            prefix, a row being the language's when its `id` starts with `<prefix>-`.
        xtreme_group / xtreme_r_group: the benchmark group used by analysis; None where the task is not in it.
        qa_scorer: extractive QA only: `squad` (English normalisation in every language, as XTREME scores XQuAD and
            TyDiQA-GoldP) or `mlqa` (MLQA's language-aware normalisation).
        tag_scheme: tagging only: how tags are read as chunks for F1 (`components.metrics.tagging_f1`): `iob`
            (B-/I- entity tags, PAN-X) or `plain` (tags without IOB prefixes: UPOS, CCG supertags).
        hub_schema_source: where the Hub dataset's schema (columns, feature types, label encoding, splits) was read;
            the Hub converters in `components.data` and the fixtures of tests/hub_fixtures.py follow it.
        unobtainable: why the data cannot be obtained publicly ("" when it can); such a task is refused
            (`check_obtainable`) unless its files are under the data root.
    """

    name: str
    task_type: TaskType
    metrics: tuple[str, ...]
    langs: tuple[str, ...]
    files: dict[str, tuple[str, ...]]
    file_format: str
    labels: tuple[str, ...] = ()
    label_aliases: dict[str, str] = field(default_factory=dict)
    train_sources: tuple[str, ...] | None = ()
    withheld_label_splits: tuple[str, ...] = ()
    dev_split: DevSplit | None = None
    hf_dataset: tuple[str, str | None] | None = None
    hf_splits: dict[str, str] = field(default_factory=dict)
    hf_id_lang_prefixes: dict[str, str] = field(default_factory=dict)
    xtreme_group: str | None = None
    xtreme_r_group: str | None = None
    qa_scorer: str = "squad"
    tag_scheme: str | None = None
    hub_schema_source: str = ""
    unobtainable: str = ""

    @property
    def headline_metric(self) -> str:
        return self.metrics[0]

    def check_lang(self, lang: str, *, training: bool = False) -> None:
        """Raises unless `lang` is an evaluation language; with `training`, English (the zero-shot source, e.g.
        XCOPA's COPA data) is accepted too."""
        if lang not in self.langs and not (training and lang == "en"):
            raise XstiltsInputError(
                f"unknown language {lang!r} for task {self.name!r}; expected one of: {', '.join(self.langs)}"
            )
        check_obtainable(self)


def check_obtainable(spec: TaskSpec, root: Path | None = None) -> None:
    """Raises with the registry's reason when `spec`'s data cannot be obtained publicly (CCG: CCGbank is
    LDC-licensed) and no copy of its files is under the data root. Cheap (file existence only), so that phase entry
    points (through `TaskSpec.check_lang`) and the study-config check refuse such a task before any run starts."""
    if not spec.unobtainable:
        return
    root = root or data_root()
    paths = [root / pattern.format(lang=lang) for patterns in spec.files.values() for pattern in patterns
             for lang in spec.langs]
    if not any(path.is_file() for path in paths):
        raise XstiltsInputError(
            f"task {spec.name!r} cannot be obtained: {spec.unobtainable}. Put a licensed copy at "
            f"{', '.join(sorted({str(path) for path in paths}))} (data root {root}; set {DATA_ROOT_ENV} to change "
            f"it), or leave {spec.name} out"
        )


def _langs(text: str) -> tuple[str, ...]:
    return tuple(text.split())


NLI_LABELS = ("entailment", "neutral", "contradiction")
PANX_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
UPOS_LABELS = (
    "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()
)
XD = "xtreme/download"

_XTREME_PANX = _langs(
    "ar he vi id jv ms tl eu ml ta te af nl en de el bn hi mr ur fa fr it pt es bg ru ja ka ko th sw yo my zh kk tr et fi hu"
)
_XTREME_UDPOS = _langs(
    "af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th tl tr ur vi yo zh"
)
_XTREME_TATOEBA = _langs(
    "ar he vi id jv tl eu ml ta te af nl de el bn hi mr ur fa fr it pt es bg ru ja ka ko th sw zh kk tr et fi hu"
)

_SPECS = (
    # XTREME-R tasks (and XTREME's).
    TaskSpec(
        name="xnli", task_type=TaskType.PAIR_CLASSIFICATION, metrics=("accuracy",),
        langs=_langs("ar bg de el en es fr hi ru sw th tr ur vi zh"),
        files={"dev": (f"{XD}/xnli/dev-{{lang}}.tsv",), "test": (f"{XD}/xnli/test-{{lang}}.tsv",)},
        file_format="tsv_pair", labels=NLI_LABELS, label_aliases={"contradictory": "contradiction"},
        train_sources=("mnli",), withheld_label_splits=("test",),
        dev_split=DevSplit(train=1800, select=198, group_by=("text_a",)),
        hf_dataset=("facebook/xnli", "{lang}"), hf_splits={"dev": "validation", "test": "test"},
        xtreme_group="classification", xtreme_r_group="classification",
    ),
    TaskSpec(
        name="xcopa", task_type=TaskType.MULTIPLE_CHOICE, metrics=("accuracy",),
        langs=_langs("et ht id it qu sw ta th tr vi zh"),
        files={"dev": (f"{XD}/xcopa/val-{{lang}}.jsonl",), "test": (f"{XD}/xcopa/test-{{lang}}.jsonl",)},
        file_format="copa_jsonl", train_sources=("siqa", "copa"),
        hf_dataset=("cambridgeltl/xcopa", "{lang}"), hf_splits={"dev": "validation", "test": "test"},
        xtreme_r_group="classification",
    ),
    TaskSpec(
        name="udpos", task_type=TaskType.TOKEN_CLASSIFICATION, metrics=("f1", "token_accuracy"),
        langs=tuple(sorted(_XTREME_UDPOS + _langs("lt pl uk wo ro"))),
        files={split: (f"{XD}/udpos/{split}-{{lang}}.tsv",) for split in ("train", "dev", "test")},
        file_format="conll", labels=UPOS_LABELS, tag_scheme="plain",
        xtreme_group="tagging", xtreme_r_group="tagging",
    ),
    TaskSpec(
        name="panx", task_type=TaskType.TOKEN_CLASSIFICATION, metrics=("f1",),
        langs=tuple(sorted(_XTREME_PANX + _langs("qu pl uk az lt pa gu ro"))),
        files={split: (f"{XD}/panx/{split}-{{lang}}.tsv",) for split in ("train", "dev", "test")},
        file_format="conll", labels=PANX_LABELS, tag_scheme="iob", withheld_label_splits=("test",),
        hf_dataset=("unimelb-nlp/wikiann", "{lang}"), hf_splits={"train": "train", "dev": "validation", "test": "test"},
        xtreme_group="tagging", xtreme_r_group="tagging",
    ),
    TaskSpec(
        name="xquad", task_type=TaskType.EXTRACTIVE_QA, metrics=("f1", "exact_match"),
        langs=_langs("ar de el en es hi ro ru th tr vi zh"),
        files={"test": (f"{XD}/xquad/xquad.{{lang}}.json",)}, file_format="squad_json",
        train_sources=("squad",), hf_dataset=("google/xquad", "xquad.{lang}"), hf_splits={"test": "validation"},
        xtreme_group="qa", xtreme_r_group="qa",
    ),
    TaskSpec(
        name="mlqa", task_type=TaskType.EXTRACTIVE_QA, metrics=("f1", "exact_match"),
        langs=_langs("ar de en es hi vi zh"),
        files={
            "dev": (f"{XD}/mlqa/MLQA_V1/dev/dev-context-{{lang}}-question-{{lang}}.json",),
            "test": (f"{XD}/mlqa/MLQA_V1/test/test-context-{{lang}}-question-{{lang}}.json",),
        },
        file_format="squad_json", train_sources=("squad",), withheld_label_splits=("test",),
        hf_dataset=("facebook/mlqa", "mlqa.{lang}.{lang}"), hf_splits={"dev": "validation", "test": "test"},
        xtreme_group="qa", xtreme_r_group="qa", qa_scorer="mlqa",
    ),
    TaskSpec(
        name="tydiqa", task_type=TaskType.EXTRACTIVE_QA, metrics=("f1", "exact_match"),
        langs=_langs("ar bn en fi id ko ru sw te"),
        files={
            "train": (f"{XD}/tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.{{lang}}.train.json",),
            "dev": (f"{XD}/tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.{{lang}}.dev.json",),
        },
        file_format="squad_json", withheld_label_splits=("dev",),
        hf_dataset=("google-research-datasets/tydiqa", "secondary_task"),
        hf_splits={"train": "train", "dev": "validation"},
        hf_id_lang_prefixes={"ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish", "id": "indonesian",
                             "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu"},
        hub_schema_source="dataset card of google-research-datasets/tydiqa, config secondary_task: id "
                          "(`<language name>-<number>-<n>`, e.g. arabic-2387335860751143628-1), title, context, "
                          "question, answers {text, answer_start}; splits train, validation; every language in one "
                          "split",
        xtreme_group="qa", xtreme_r_group="qa",
    ),
    TaskSpec(
        name="mewslix", task_type=TaskType.DUAL_ENCODER_RETRIEVAL, metrics=("map_at_20",),
        langs=_langs("ar de en es fa ja pl ro ta tr uk"),
        # XTREME-R trains and selects on English Wikipedia pairs (run_retrieval_el.py's train and dev files) and scores
        # WikiNews mentions against the candidate entity set.
        files={
            "train": (f"{XD}/mewslix/wikipedia_pairs-train.jsonl",),
            "dev": (f"{XD}/mewslix/wikipedia_pairs-dev.jsonl",),
            "test": (f"{XD}/mewslix/wikinews_mentions-test.jsonl",),
            "candidates": (f"{XD}/mewslix/candidate_set_entities.jsonl",),
        },
        file_format="mewslix_jsonl", xtreme_r_group="retrieval",
    ),
    TaskSpec(
        name="lareqa", task_type=TaskType.DUAL_ENCODER_RETRIEVAL, metrics=("map_at_20",),
        langs=_langs("ar de el en es hi ru th tr vi zh"),
        files={"test": (f"{XD}/lareqa/xquad-r/{{lang}}.json",)}, file_format="xquad_r_json",
        train_sources=("squad",), xtreme_r_group="retrieval",
    ),
    TaskSpec(
        name="tatoeba", task_type=TaskType.RETRIEVAL, metrics=("accuracy",),
        langs=tuple(sorted(_XTREME_TATOEBA + _langs("az lt pl uk ro"))),
        files={"test": (f"{XD}/tatoeba/{{lang}}-en.{{lang}}", f"{XD}/tatoeba/{{lang}}-en.en")},
        file_format="aligned_text", train_sources=None,
        xtreme_group="retrieval", xtreme_r_group="retrieval",
    ),
    # XTREME tasks that XTREME-R dropped.
    TaskSpec(
        name="pawsx", task_type=TaskType.PAIR_CLASSIFICATION, metrics=("accuracy",),
        langs=_langs("de en es fr ja ko zh"),
        files={
            "train": (f"{XD}/pawsx/train-{{lang}}.tsv",),
            "dev": (f"{XD}/pawsx/dev-{{lang}}.tsv",),
            "test": (f"{XD}/pawsx/test-{{lang}}.tsv",),
        },
        # PAWS-X dev lines are aligned across languages (labels agree on 98.4-99.9% of lines), but PAWS builds several
        # pairs from one sentence: 164 of the last 300 English dev items share a sentence with the first 1,500, so a
        # plain cut would leak evaluation text into training. The dev-split therefore deals out groups of items linked
        # by a shared English sentence (2,000 items form 1,201 groups of up to 7): 1,500 / 200 / 300 items.
        dev_split=DevSplit(train=1500, select=200, group_by=("text_a", "text_b")),
        file_format="tsv_pair", labels=("0", "1"), withheld_label_splits=("test",),
        hf_dataset=("google-research-datasets/paws-x", "{lang}"),
        hf_splits={"train": "train", "dev": "validation", "test": "test"},
        xtreme_group="classification",
    ),
    TaskSpec(
        name="bucc2018", task_type=TaskType.RETRIEVAL, metrics=("f1", "precision", "recall"),
        langs=_langs("de fr ru zh"),
        files={
            split: (f"{XD}/bucc2018/{{lang}}-en.{split}.{{lang}}", f"{XD}/bucc2018/{{lang}}-en.{split}.en",
                    f"{XD}/bucc2018/{{lang}}-en.{split}.gold")
            for split in ("dev", "test")
        },
        file_format="bucc", train_sources=None, withheld_label_splits=("test",), xtreme_group="retrieval",
    ),
    # English intermediate tasks of the reference study.
    TaskSpec(
        name="mnli", task_type=TaskType.PAIR_CLASSIFICATION, metrics=("accuracy",), langs=("en",),
        files={"train": (f"{XD}/xnli/train-en.tsv",)}, file_format="tsv_pair", labels=NLI_LABELS,
        label_aliases={"contradictory": "contradiction"},
        hf_dataset=("nyu-mll/multi_nli", None), hf_splits={"train": "train", "dev": "validation_matched"},
        hub_schema_source="dataset card of nyu-mll/multi_nli (README dataset_info): promptID int32, pairID, premise, "
                          "premise_binary_parse, premise_parse, hypothesis, hypothesis_binary_parse, hypothesis_parse, "
                          "genre (strings), label ClassLabel(entailment, neutral, contradiction); splits train, "
                          "validation_matched, validation_mismatched",
    ),
    TaskSpec(
        name="anli", task_type=TaskType.PAIR_CLASSIFICATION, metrics=("accuracy",), langs=("en",),
        files={"dev": tuple(f"english/anli/ANLI_analysis_r{r}_dev.csv" for r in (1, 2, 3))},
        file_format="anli_csv", labels=NLI_LABELS,
        label_aliases={"e": "entailment", "n": "neutral", "c": "contradiction"},
        dev_split=DevSplit(train=2700, select=400),
        hf_dataset=("facebook/anli", None), hf_splits={"train": "train_r1", "dev": "dev_r1"},
    ),
    TaskSpec(
        name="qqp", task_type=TaskType.PAIR_CLASSIFICATION, metrics=("accuracy",), langs=("en",),
        files={}, file_format="tsv_pair", labels=("0", "1"),
        hf_dataset=("nyu-mll/glue", "qqp"), hf_splits={"train": "train", "dev": "validation"},
        hub_schema_source="dataset card of nyu-mll/glue, config qqp (README dataset_info): question1, question2 "
                          "(strings), label ClassLabel(not_duplicate, duplicate), idx int32; splits train, validation, "
                          "test (test labels -1)",
    ),
    TaskSpec(
        name="sst2", task_type=TaskType.SINGLE_CLASSIFICATION, metrics=("accuracy",), langs=("en",),
        # The bundle's re-split of GLUE SST-2: train + dev = GLUE train, test = GLUE dev (labeled).
        files={split: (f"english/sst2/{split}.tsv",) for split in ("train", "dev", "test")},
        file_format="sst2_tsv", labels=("0", "1"),
        hf_dataset=("nyu-mll/glue", "sst2"), hf_splits={"train": "train", "dev": "validation"},
    ),
    TaskSpec(
        name="squad", task_type=TaskType.EXTRACTIVE_QA, metrics=("f1", "exact_match"), langs=("en",),
        files={"train": (f"{XD}/squad/train-v1.1.json",), "dev": (f"{XD}/squad/dev-v1.1.json",)},
        file_format="squad_json", hf_dataset=("rajpurkar/squad", None),
        hf_splits={"train": "train", "dev": "validation"},
        hub_schema_source="dataset card of rajpurkar/squad, config plain_text: id, title, context, question "
                          "(strings), answers {text: list of string, answer_start: list of int32}; splits train, "
                          "validation",
    ),
    TaskSpec(
        name="squad_v2", task_type=TaskType.EXTRACTIVE_QA, metrics=("f1", "exact_match"), langs=("en",),
        # Unanswerable questions (empty answer lists) train towards the CLS token (start = end = 0), as HF's run_qa
        # and jiant do; `components.task_types._answer_positions`.
        files={}, file_format="squad_json", hf_dataset=("rajpurkar/squad_v2", None),
        hf_splits={"train": "train", "dev": "validation"},
        hub_schema_source="dataset card of rajpurkar/squad_v2, config squad_v2: as rajpurkar/squad, with empty "
                          "answers.text / answers.answer_start lists for unanswerable questions; splits train, "
                          "validation",
    ),
    TaskSpec(
        name="hellaswag", task_type=TaskType.MULTIPLE_CHOICE, metrics=("accuracy",), langs=("en",),
        # rowanz/hellaswag's data/*.jsonl where a user has them (the bundle does not: over 4 MiB), else the Hub.
        files={"train": ("english/hellaswag/hellaswag_train.jsonl",),
               "dev": ("english/hellaswag/hellaswag_val.jsonl",)},
        file_format="hellaswag_jsonl", hf_dataset=("Rowan/hellaswag", None),
        hf_splits={"train": "train", "dev": "validation"},
        hub_schema_source="dataset card of Rowan/hellaswag (dataset_infos.json): ind int32, activity_label, ctx_a, "
                          "ctx_b, ctx (strings), endings list of string, source_id, split, split_type (strings), label "
                          "string ('0'-'3'; '' in test); splits train, validation, test",
    ),
    TaskSpec(
        name="commonsenseqa", task_type=TaskType.MULTIPLE_CHOICE, metrics=("accuracy",), langs=("en",),
        files={"dev": ("english/commonsenseqa/dev_rand_split.jsonl",)}, file_format="commonsenseqa_jsonl",
        dev_split=DevSplit(train=1000, select=221),
        hf_dataset=("tau/commonsense_qa", None), hf_splits={"train": "train", "dev": "validation"},
    ),
    TaskSpec(
        name="cosmosqa", task_type=TaskType.MULTIPLE_CHOICE, metrics=("accuracy",), langs=("en",),
        files={"dev": ("english/cosmosqa/valid.csv",)}, file_format="cosmosqa_csv",
        dev_split=DevSplit(train=2500, select=485),
        hf_dataset=("allenai/cosmos_qa", None), hf_splits={"train": "train", "dev": "validation"},
    ),
    TaskSpec(
        name="siqa", task_type=TaskType.MULTIPLE_CHOICE, metrics=("accuracy",), langs=("en",),
        files={
            "train": (f"{XD}/siqa/socialIQa_v1.4_trn.jsonl",),
            "dev": (f"{XD}/siqa/socialIQa_v1.4_dev.jsonl",),
            "test": (f"{XD}/siqa/socialIQa_v1.4_tst.jsonl",),
        },
        file_format="siqa_jsonl", dev_split=DevSplit(train=1700, select=254),
        hf_dataset=("allenai/social_i_qa", None), hf_splits={"train": "train", "dev": "validation"},
    ),
    TaskSpec(
        name="copa", task_type=TaskType.MULTIPLE_CHOICE, metrics=("accuracy",), langs=("en",),
        files={"train": (f"{XD}/xcopa/train-en.jsonl",), "dev": (f"{XD}/xcopa/val-en.jsonl",)},
        file_format="copa_jsonl", hf_dataset=("super_glue", "copa"), hf_splits={"train": "train", "dev": "validation"},
    ),
    TaskSpec(
        # jiant scores CCG supertagging by token accuracy.
        name="ccg", task_type=TaskType.TOKEN_CLASSIFICATION, metrics=("token_accuracy", "f1"), langs=("en",),
        files={split: (f"english/ccg/{split}.tsv",) for split in ("train", "dev", "test")}, file_format="conll",
        tag_scheme="plain",
        unobtainable="CCGbank is LDC-licensed (LDC2005T13); no public copy exists and the bundle has none",
    ),
)

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _SPECS}


def get_task(name: str) -> TaskSpec:
    """The spec of task `name`, or one clear error listing the known tasks."""
    try:
        return TASKS[name]
    except KeyError:
        raise XstiltsInputError(f"unknown task {name!r}; expected one of: {', '.join(sorted(TASKS))}") from None
