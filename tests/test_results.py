"""`python -m analysis.results`: RESULTS.md and its figures from a synthetic three-seed study in a temporary store."""

import numpy as np
import yaml
from click.testing import CliRunner

from analysis import results
from tests.test_analysis_collect import log_run

LANGS = ("en", "de", "sw", "ur")  # sw and ur are in configs/low_resource_languages.yaml
CONFIG = {"study": "toy-source", "model": "multilingual-e5-small", "seeds": [1, 2, 3], "methods": ["full"],
          "intermediate": ["none", {"task": "udpos", "source_lang": "en", "max_train_examples": 100},
                           {"task": "udpos", "source_lang": "ja", "max_train_examples": 100}],
          "targets": [{"task": "xnli", "max_train_examples": 64, "epochs": 1,
                       "evaluate": {"langs": ",".join(LANGS), "max_eval_examples": 50}}]}
EN_GAINS, JA_GAINS = (1.0, 2.0, 3.0), (-1.0, -1.0, -1.0)


def baseline(seed):
    return {"en": 80.0, "de": 60.0 + seed, "sw": 50.0 + seed, "ur": 40.0 + seed}


def log_study():
    """full fine-tuning without an intermediate task and after udpos in en and ja (every language gains the same),
    and MAD-X without one (10 points below full in sw and ur, 5 elsewhere), three seeds."""
    for seed in (1, 2, 3):
        params = {"task": "xnli", "model": "multilingual-e5-small", "method": "full", "seed": str(seed),
                  "intermediate_task": "none"}
        log_run({f"eval/xnli/{lang}/accuracy": value for lang, value in baseline(seed).items()}, params=params,
                experiment="toy-source")
        log_run({f"eval/xnli/{lang}/accuracy": value - (10 if lang in ("sw", "ur") else 5)
                 for lang, value in baseline(seed).items()}, params={**params, "method": "madx"},
                experiment="toy-source")
        for source, gains in (("en", EN_GAINS), ("ja", JA_GAINS)):
            log_run({f"eval/xnli/{lang}/accuracy": value + gains[seed - 1] for lang, value in baseline(seed).items()},
                    params={**params, "intermediate_task": "udpos", "intermediate_source_lang": source},
                    experiment="toy-source")


def interval(per_seed, n_resamples=2000):
    """The 95% percentile bootstrap interval of the mean, as analysis/aggregate.py defines it (numpy, seed 0)."""
    values = np.asarray(per_seed, dtype=float)
    means = values[np.random.default_rng(0).integers(0, len(values), size=(n_resamples, len(values)))].mean(axis=1)
    return tuple(np.percentile(means, [2.5, 97.5]))


def written(tmp_path, *extra):
    config = tmp_path / "toy.yaml"
    config.write_text("# A toy study: udpos in two source languages.\n# Cut: everything.\n" + yaml.safe_dump(CONFIG))
    plan = tmp_path / "plan.txt"
    plan.write_text("plan: 12 steps: 0 cached, 12 to run\n  CPU-hours 0.10 for 12 of 12 steps on CPU\n")
    result = CliRunner().invoke(results.main, ["--experiment", "toy-source", "--config", str(config), "--output",
                                               str(tmp_path / "RESULTS.md"), "--figures-dir", str(tmp_path / "res"),
                                               "--plan-file", str(plan), "--n-bootstrap", "2000", *extra])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_results_file_has_the_tables_intervals_answers_and_figures(tracking_store, tmp_path):
    log_study()
    code, out = written(tmp_path)
    assert code == 0, out
    text = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert "A toy study: udpos in two source languages.\nCut: everything." in text  # the design, from the header
    assert "CPU-hours 0.10 for 12 of 12 steps" in text
    # Main table: the baseline's per-seed average over the 4 languages is (230 + 3 seed) / 4.
    per_seed = [(230 + 3 * seed) / 4 for seed in (1, 2, 3)]
    low_resource = [(90 + 2 * seed) / 2 for seed in (1, 2, 3)]
    assert (f"| full · multilingual-e5-small · none | xnli | accuracy | {np.mean(per_seed):.1f} ± "
            f"{np.std(per_seed, ddof=1):.1f} |") in text
    assert f"| {np.mean(low_resource):.1f} ± {np.std(low_resource, ddof=1):.1f} | 3 |" in text
    # Gains: udpos(en) gains 1, 2, 3 points in every language; udpos(ja) loses 1 in every seed.
    low, high = interval(EN_GAINS)
    english = f"+2.0 [{low:+.1f}, {high:+.1f}]"
    assert f"| full · multilingual-e5-small · udpos(en) | xnli | {english} | {english} | {english} | 3 |" in text
    assert ("- full · multilingual-e5-small · udpos(ja) on xnli: lower on all languages (-1.0 [-1.0, -1.0]); lower "
            "on the languages other than English (-1.0 [-1.0, -1.0])") in text
    # Source language: ja minus en, per seed -2, -3, -4.
    low, high = interval([-2, -3, -4])
    assert f"| full · multilingual-e5-small · udpos(ja) | xnli | -3.0 [{low:+.1f}, {high:+.1f}] |" in text
    # MAD-X: 5 points below full in en and de, 10 in sw and ur, every seed.
    assert ("| madx · multilingual-e5-small · none | xnli | -7.5 [-7.5, -7.5] | -8.3 [-8.3, -8.3] | "
            "-10.0 [-10.0, -10.0] | 3 | all languages, the languages other than English, the low-resource "
            "languages |") in text
    assert "| full · multilingual-e5-small · udpos(*) | xnli |" in text  # the pooled correlation
    for figure in (results.HEATMAP, results.SCATTER, results.METHODS):
        assert (tmp_path / "res" / figure).stat().st_size > 10_000
        assert f"](res/{figure})" in text
    assert "No run in this store ran on a GPU" in text
    assert "study, first run start to last run end" in text


def test_an_unknown_experiment_is_one_error_and_writes_nothing(tracking_store, tmp_path):
    log_study()
    code, out = written(tmp_path, "--experiment", "no-such-study")
    assert code != 0 and "experiment 'no-such-study' does not exist" in out, out
    assert not (tmp_path / "RESULTS.md").exists()


def test_a_config_that_is_not_a_study_config_is_one_error_and_writes_nothing(tracking_store, tmp_path):
    log_study()
    config = tmp_path / "toy.yaml"
    config.write_text("seeds: [1]\nmethods: [full]\ntargets: [{task: xnlii}]\n")
    result = CliRunner().invoke(results.main, ["--experiment", "toy-source", "--config", str(config), "--output",
                                               str(tmp_path / "RESULTS.md")])
    assert result.exit_code == 2 and f"{config}: targets[0].task: 'xnlii'" in result.output, result.output
    assert not (tmp_path / "RESULTS.md").exists()
