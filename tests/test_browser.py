"""The MLflow UI and optuna-dashboard in a real browser, as researchers compare runs: Debian's Chromium driven by
Playwright on a store made by `main` on a tiny study grid (two configurations, one target task, three evaluated
languages) and on a tiny Optuna study in the project's journal storage. Each test saves what it asserted on as a
screenshot (tests/browser_helpers.py says where).

Expected run names, tags and data are written out by hand (from the naming scheme in components/run_identity.py's
docstring, the XTREME files and XNLI's published sizes), not computed by the code under test.
"""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from playwright.sync_api import expect, sync_playwright

from browser_helpers import UI_TIMEOUT_MS, VIEWPORT, free_port, launch_chromium, screenshot, served
from components.settings import PROJECT_ROOT, data_root
from tuning.storage import open_storage

STUDY = "browser"  # the config file's stem names the study
SEED = 3
LANGS = ("en", "de", "sw")
METHODS = ("full", "task_adapter")
N_EVAL = 20
FAST = "epochs: 1, batch_size: 16, max_length: 64, max_train_examples: 32, max_select_examples: 32"
EXPERIMENT = "Default"  # where runs go without an experiment name
MAIN_NAME = "main · browser"
ANALYSIS_NAME = "analysis · Default"
TARGET_NAMES = {"full": "target · xnli · full · s3", "task_adapter": "target · xnli · task_adapter · s3"}
EVAL_NAMES = {"full": "eval · xnli · full · s3", "task_adapter": "eval · xnli · task_adapter · s3"}
# XNLI's dev set has 2,490 items per language; the dev-split protocol trains on the first 1,800, selects on the next
# 198 and evaluates from item 1,998 on (docs/data.md: Protocols), here its first N_EVAL.
XNLI_DEV_SIZE, FIRST_EVAL_ITEM = 2490, 1998
PREDICTIONS_TABLE = f"dev-en.{N_EVAL}-of-{XNLI_DEV_SIZE}.tsv.table.json"
STUDY_TIMEOUT_S = 600

# The Optuna study: three trials with fixed learning rates and objective values, so that its best trial is known.
TUNE_STUDY = "browser-tune"
TUNE_TRIALS = [(1e-4, 41.5), (3e-4, 47.25), (1e-3, 38.0)]


@pytest.fixture(scope="session")
def mlflow_ui(tmp_path_factory) -> str:
    """The address of `mlflow server` on a new SQLite store, its artifacts served by the server (the
    scripts/tracking_server.sh set-up)."""
    folder = tmp_path_factory.mktemp("browser-store")
    port = free_port()
    # One worker process serves one browser, and no job runner (its seven consumer processes run the GenAI pages'
    # jobs): on 2 busy cores their start takes most of the server's.
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
               f"sqlite:///{folder / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    address = f"http://127.0.0.1:{port}"
    with served(command, f"{address}/health", folder / "mlflow-server.log", cwd=folder,
                environment={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}):
        yield address


@pytest.fixture(scope="session")
def runs_by_name(mlflow_ui, tiny_model_dir, tmp_path_factory) -> dict:
    """The runs of `main` on a tiny grid and of its analysis, by name, run through the server as a user runs a study:
    full fine-tuning and a task adapter (no intermediate task) on XNLI, each evaluated in en, de and sw."""
    folder = tmp_path_factory.mktemp("browser-study")
    config = folder / f"{STUDY}.yaml"
    config.write_text(f"model: {tiny_model_dir}\nseeds: [{SEED}]\nmethods: [{', '.join(METHODS)}]\n"
                      "intermediate: [none]\n"
                      f"targets: [{{task: xnli, {FAST}, evaluate: {{langs: '{','.join(LANGS)}', "
                      f"max_eval_examples: {N_EVAL}}}}}]\n", encoding="utf-8")
    # This interpreter's environment first on PATH: the MLproject commands run `python -m ...`.
    environment = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_ui, "PYTHONPATH": str(PROJECT_ROOT),
                   "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # One step at a time: two steps at once can log the same dataset at the same moment, and MLflow 3.17.2's SQL
    # store then refuses one of them (UNIQUE constraint failed: datasets.experiment_id, datasets.name,
    # datasets.digest), which fails that step.
    for module, arguments in [("pipelines.main", ["--config", str(config)]),
                              ("analysis.main", ["--experiment", EXPERIMENT, "--langs", ",".join(LANGS),
                                                 "--output-dir", str(folder / "analysis"), "--n-bootstrap", "100"])]:
        result = subprocess.run([sys.executable, "-m", module, *arguments], cwd=folder, capture_output=True,
                                text=True, env=environment, timeout=STUDY_TIMEOUT_S)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    client = MlflowClient(mlflow_ui)
    runs = client.search_runs([experiment.experiment_id for experiment in client.search_experiments()])
    return {run.info.run_name: run for run in runs}


@pytest.fixture(scope="session")
def chromium():
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    """A fresh page in a new browser context: no view settings from an earlier test (the MLflow UI keeps them in the
    browser's local storage)."""
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    yield page
    context.close()


def experiment_of(runs_by_name) -> str:
    return runs_by_name[MAIN_NAME].info.experiment_id


def close_assistant(page) -> None:
    """Closes the assistant panel, which the UI opens on a first visit over a third of the page."""
    close = page.get_by_role("button", name="Close")
    if close.is_visible():
        close.click()


def open_runs_table(page, mlflow_ui: str, experiment_id: str) -> None:
    """The experiment's Training runs page, once its table shows the study run, with the assistant panel (open on a
    first visit) closed and the Run Name column wide enough for screenshots to show whole names."""
    page.goto(f"{mlflow_ui}/#/experiments/{experiment_id}/runs")
    expect(page.get_by_role("link", name=MAIN_NAME, exact=True)).to_be_visible()
    close_assistant(page)
    # Widened by the width of the next column (Created), dragging the edge of its header as a user does.
    header = page.locator(".ag-header-cell[col-id='attributes.`Run Name`']")
    header.hover()  # the resize handle answers once the pointer is over the header
    created = page.get_by_role("columnheader", name="Created").first
    width = created.bounding_box()["width"]
    header.locator(".ag-header-cell-resize").drag_to(created, target_position={"x": width - 4, "y": 8})


def row_of(page, run_name: str):
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=run_name, exact=True))


def expand_study_run(page) -> None:
    """Shows the study run's child runs (the table lists a parent run collapsed)."""
    row_of(page, MAIN_NAME).locator("button[data-component-id*='runnamecellrenderer']").click()


def table_rows(page) -> list[str]:
    """The text of each row of the runs table, top to bottom (the table spreads a row's cells over several row
    elements, one per block of columns, with the same row index)."""
    cells = page.evaluate("""() => [...document.querySelectorAll('[role=row][aria-rowindex]')]
        .map(row => [Number(row.getAttribute('aria-rowindex')), row.innerText])""")
    rows: dict[int, str] = {}
    for index, text in cells:
        rows[index] = rows.get(index, "") + "\n" + text
    return [rows[index] for index in sorted(rows)]


def test_runs_table_names_every_run_by_what_it_is(page, mlflow_ui, runs_by_name):
    children = {ANALYSIS_NAME, *TARGET_NAMES.values(), *EVAL_NAMES.values()}
    assert {MAIN_NAME, *children} == set(runs_by_name)
    open_runs_table(page, mlflow_ui, experiment_of(runs_by_name))
    # Every step run and the analysis run sit under the study's run: shown once it is expanded.
    for name in sorted(children):
        expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
    expand_study_run(page)
    for name in sorted(children):
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    # The Dataset column: each evaluate run's evaluation sets, each target run's English training data (the
    # dev-split protocol trains on XNLI's English dev set).
    rows = {line.strip(): row for row in table_rows(page) for line in row.splitlines()}
    for method in METHODS:
        assert "xnli-dev-en" in rows[EVAL_NAMES[method]] and "xnli-dev-de" in rows[EVAL_NAMES[method]]
        assert "xnli-dev-en" in rows[TARGET_NAMES[method]]
        # The Models column: the model each target run logged, named after the run.
        assert f"target-xnli-{method}-s{SEED}" in rows[TARGET_NAMES[method]]
    screenshot(page, "mlflow-runs-table")


def test_grouping_by_configuration_puts_each_method_in_its_own_group(page, mlflow_ui, runs_by_name, tiny_model_dir):
    open_runs_table(page, mlflow_ui, experiment_of(runs_by_name))
    page.get_by_role("button", name="Group by").click()
    page.get_by_placeholder("Search").fill("xlt.configuration")
    page.get_by_role("menuitemcheckbox", name="xlt.configuration", exact=True).click()
    page.keyboard.press("Escape")
    # `method · model · intermediate task`, as the analysis names a configuration
    groups = {f"Group: {method} · {tiny_model_dir} · none": method for method in METHODS}
    for group in groups:
        expect(page.get_by_text(group, exact=True)).to_be_visible()
    members: dict[str, set[str]] = {}
    current = None
    for row in table_rows(page):
        lines = {line.strip() for line in row.splitlines()}
        if "Pin group" in lines:  # a group's header row; the runs without the tag are the group "Additional runs"
            current = next((groups[group] for group in groups if group in lines), None)
        for method in METHODS:
            for name in (TARGET_NAMES[method], EVAL_NAMES[method]):
                if name in lines:
                    members.setdefault(current, set()).add(name)
    assert members == {method: {TARGET_NAMES[method], EVAL_NAMES[method]} for method in METHODS}
    screenshot(page, "mlflow-grouped-by-configuration")


def test_chart_view_shows_a_tasks_languages_and_averages_in_one_section(page, mlflow_ui, runs_by_name):
    open_runs_table(page, mlflow_ui, experiment_of(runs_by_name))
    page.locator("label:has(input[value=CHART])").click()  # the view switch's Chart view (its radio is hidden)
    expand_study_run(page)
    page.get_by_placeholder("Search metric charts").fill("xnli.accuracy/")
    charts = [f"xnli.accuracy/{name}" for name in ("avg", "avg_low_resource", "avg_no_en", *sorted(LANGS))]
    expect(page.get_by_text(re.compile(rf"^xnli\.accuracy\s*\({len(charts)}\)$"))).to_be_visible()  # its title
    for chart in charts:
        expect(page.get_by_role("heading", name=chart, exact=True)).to_be_visible()
    # each chart has a bar per evaluate run, named in its legend (and once more in the run list beside the charts)
    for method in METHODS:
        expect(page.get_by_text(EVAL_NAMES[method], exact=True)).to_have_count(len(charts) + 1)
    screenshot(page, "mlflow-chart-view-xnli-languages")


SHOWN = """element => {  // on screen, and neither clipped by a scrolled container nor covered
    const r = element.getBoundingClientRect();
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return hit !== null && (hit === element || element.contains(hit) || hit.contains(element));
}"""
VALUES_ON_THE_SAME_LINE = f"""label => {{
    const shown = {SHOWN};
    const box = label.getBoundingClientRect(), middle = (box.top + box.bottom) / 2;
    return [...document.querySelectorAll('body *')]
        .filter(element => element.children.length === 0 && element.textContent.trim())
        .map(element => [element, element.getBoundingClientRect()])
        .filter(([element, r]) => r.width > 0 && r.left >= box.right && r.top <= middle && middle <= r.bottom)
        .filter(([element]) => shown(element))
        .sort((a, b) => a[1].left - b[1].left).map(([element]) => element.textContent.trim());
}}"""


def values_beside(page, label: str) -> list[str]:
    """The texts shown to the right of `label`, on its line, left to right (a row of the Compare page's run
    details, as seen)."""
    return page.get_by_text(label, exact=True).first.evaluate(VALUES_ON_THE_SAME_LINE)


# The Compare page's metrics table is two scrolled grids side by side, names and values, whose cells sit at the offset
# of their row (`style.top`). A row's values: the cells of the values grid at the name's offset, left to right, with
# how far each is, on screen, from the name's line (0 once the names have followed a scroll of the values).
METRIC_ROW = """label => {
    const cell = label.closest('[role=rowgroup] > *'), names = label.closest('[role=grid]');
    const band = names.getBoundingClientRect().top, line = cell.getBoundingClientRect().top;
    return [...document.querySelectorAll('[role=grid]')]
        .filter(grid => grid !== names && Math.abs(grid.getBoundingClientRect().top - band) < 2)
        .flatMap(grid => [...grid.querySelectorAll('[role=rowgroup] > *')])
        .filter(value => value.style.top === cell.style.top)
        .sort((a, b) => parseFloat(a.style.left) - parseFloat(b.style.left))
        .map(value => [value.innerText.trim(), Math.abs(value.getBoundingClientRect().top - line)]);
}"""
ROW_HEIGHT_PX = 45


def compared_metric(page, key: str) -> list[float]:
    """The values of metric `key` on the Compare page, one per run, left to right, once its row shows with its
    values on its line. The table shows a few rows at a time: it is scrolled as a user does, with the wheel over the
    values (the names follow)."""
    label = page.get_by_text(key, exact=True)
    values = page.get_by_role("grid").filter(has_not=label)
    values.scroll_into_view_if_needed()
    steps = 0
    while not (label.count() and label.evaluate(SHOWN)):
        assert steps < 60, f"the Compare page's metrics table shows no {key}"
        values.hover()
        page.mouse.wheel(0, ROW_HEIGHT_PX)
        page.wait_for_timeout(100)
        steps += 1
    if steps:
        # The names follow the values' scroll one scroll event late: headless Chromium scrolls a wheel step in one
        # event, where a screen's smooth scrolling sends many small ones. A last step of one pixel down and back
        # leaves the names within a pixel of their values.
        page.mouse.wheel(0, 1)
        page.mouse.wheel(0, -1)
    for _ in range(50):
        row = label.evaluate(METRIC_ROW)
        if row and all(offset < 2 for _text, offset in row):
            return [float(text) for text, _offset in row]
        page.wait_for_timeout(100)
    raise AssertionError(f"the Compare page shows {key} {row} (values, pixels off its line)")


def test_compare_of_two_evaluate_runs_shows_each_language_side_by_side(page, mlflow_ui, runs_by_name):
    open_runs_table(page, mlflow_ui, experiment_of(runs_by_name))
    expand_study_run(page)
    for method in METHODS:
        row_of(page, EVAL_NAMES[method]).get_by_role("checkbox").first.check()
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page.get_by_text("Comparing 2 Runs")).to_be_visible()
    shown_names = values_beside(page, "Run Name:")
    assert sorted(shown_names) == sorted(EVAL_NAMES.values())
    columns = [runs_by_name[name].data.metrics for name in shown_names]
    for lang in LANGS:
        key = f"eval/xnli/{lang}/accuracy"
        assert compared_metric(page, key) == [pytest.approx(metrics[key], abs=5e-4) for metrics in columns], key
    screenshot(page, "mlflow-compare-evaluate-runs")
    # The tiny model scores alike in both runs; a metric that differs between them (the memory each process
    # peaked at) shows that each column holds the values of the run named at its top (the UI shows 4 digits).
    assert compared_metric(page, "peak_rss_mb") == [pytest.approx(metrics["peak_rss_mb"], rel=1e-3)
                                                     for metrics in columns]
    # The task's average over its languages, logged beside them, is their mean.
    for metrics in columns:
        assert metrics["xnli.accuracy/avg"] == pytest.approx(sum(metrics[f"eval/xnli/{lang}/accuracy"]
                                                                 for lang in LANGS) / len(LANGS))
    assert compared_metric(page, "xnli.accuracy/avg") == [pytest.approx(metrics["xnli.accuracy/avg"], abs=5e-4)
                                                           for metrics in columns]


def xnli_dev_items(lang: str) -> list[tuple[str, str]]:
    """(premise ‖ hypothesis, gold label) of the evaluated XNLI dev items, read from the bundled XTREME file."""
    lines = (data_root() / f"xtreme/download/xnli/dev-{lang}.tsv").read_text(encoding="utf-8").splitlines()
    fields = [line.split("\t") for line in lines[FIRST_EVAL_ITEM:FIRST_EVAL_ITEM + N_EVAL]]
    return [(f"{premise} ‖ {hypothesis}", label) for premise, hypothesis, label in fields]


def test_predictions_table_renders_in_the_artifact_viewer(page, mlflow_ui, runs_by_name):
    run = runs_by_name[EVAL_NAMES["full"]]
    page.goto(f"{mlflow_ui}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/artifacts")
    expect(page.get_by_text("predictions", exact=True)).to_be_visible()
    close_assistant(page)
    page.get_by_text("predictions", exact=True).click()
    page.get_by_text("xnli", exact=True).click()
    page.get_by_text(PREDICTIONS_TABLE, exact=True).click()
    last_id = str(FIRST_EVAL_ITEM + N_EVAL - 1)
    expect(page.get_by_role("cell", name=last_id, exact=True)).to_be_visible()
    assert page.get_by_role("columnheader").all_inner_texts() == ["id", "input", "gold", "prediction", "correct"]
    shown = [page.get_by_role("row").filter(has=page.get_by_role("cell", name=str(FIRST_EVAL_ITEM + offset),
                                                                  exact=True)).get_by_role("cell").all_inner_texts()
             for offset in range(N_EVAL)]
    items = xnli_dev_items("en")
    assert [(int(item_id), gold) for item_id, _input, gold, _prediction, _correct in shown] == [
        (FIRST_EVAL_ITEM + offset, gold) for offset, (_text, gold) in enumerate(items)]
    for (item_id, shown_input, gold, prediction, correct), (text, _gold) in zip(shown, items):
        assert shown_input == text, item_id
        assert correct == str(gold == prediction).lower(), item_id
    accuracy = 100 * sum(correct == "true" for *_, correct in shown) / N_EVAL
    assert accuracy == pytest.approx(run.data.metrics["eval/xnli/en/accuracy"])
    screenshot(page, "mlflow-predictions-table")


@pytest.fixture(scope="session")
def optuna_dashboard(tmp_path_factory) -> str:
    """The address of `optuna-dashboard` on a journal file (the project's default storage, opened as docs/tuning.md
    says) that holds a finished study of TUNE_TRIALS."""
    folder = tmp_path_factory.mktemp("optuna")
    journal = folder / "journal.log"
    storage = open_storage(str(journal), workers=1, heartbeat_s=60, on_stale_trial=lambda study, trial: None).storage
    study = optuna.create_study(study_name=TUNE_STUDY, storage=storage, direction="maximize")
    for lr, value in TUNE_TRIALS:
        study.enqueue_trial({"lr": lr})
    values = dict(TUNE_TRIALS)
    study.optimize(lambda trial: values[trial.suggest_float("lr", 1e-5, 1e-2, log=True)], n_trials=len(TUNE_TRIALS))
    port = free_port()
    address = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "optuna-dashboard"), str(journal), "--host", "127.0.0.1",
               "--port", str(port)]
    # SIGINT: gunicorn's quick stop (on SIGTERM it waits up to 30 s for its worker)
    with served(command, f"{address}/dashboard/", folder / "optuna-dashboard.log", cwd=folder,
                stop_signal=signal.SIGINT):
        yield address


def test_optuna_dashboard_lists_the_study_and_its_trials(page, optuna_dashboard):
    page.goto(f"{optuna_dashboard}/dashboard/")
    expect(page.get_by_text(TUNE_STUDY, exact=False).first).to_be_visible()
    screenshot(page, "optuna-dashboard-studies")
    page.get_by_text(TUNE_STUDY, exact=False).first.click()
    best_number, (best_lr, best_value) = max(enumerate(TUNE_TRIALS), key=lambda trial: trial[1][1])
    expect(page.get_by_text(f"Best Trial (number={best_number})")).to_be_visible()
    expect(page.get_by_text(f"Params = [lr: {best_lr}]")).to_be_visible()
    expect(page.get_by_text(str(best_value), exact=True)).to_be_visible()
    page.get_by_text(f"Best Trial (number={best_number})").scroll_into_view_if_needed()
    screenshot(page, "optuna-dashboard-study")
    page.goto(f"{page.url.rstrip('/')}/trials")
    expect(page.get_by_text(f"{len(TUNE_TRIALS)} Trials", exact=True)).to_be_visible()
    for number in range(len(TUNE_TRIALS)):
        expect(page.get_by_text(f"Trial {number}", exact=True)).to_be_visible()
    screenshot(page, "optuna-dashboard-trials")
