"""`submission`: a study's complete test predictions -> one folder in the XTREME submission layout.

google-research/xtreme's `evaluate.py` reads `<folder>/<task>/test-<lang>.<ext>` for every language of a task and
asserts that each holds as many items as the gold file. `evaluate` runs name their prediction files by the split and
items they hold and list them in `predictions/<task>/manifest.json` (`components.predictions`); this command copies,
per task, the files listed as complete test predictions into `<output-dir>/<task>/test-<lang>.<ext>`.

A task is written only when every language of the task (the registry's list) has such a file, all from runs of one
configuration (method, model, intermediate task and source language, seed); where several runs hold a language, the
newest one's file is taken. Any other task is left out, and `submission.json` says why, per language: dev items, a
capped share of the test items, no file, or runs from before the manifest (whose `test-<lang>` files may hold dev or
capped items, so they are never used). The command fails when no task can be written.

Reads: FINISHED `evaluate` runs selected as the analysis selects them (`--experiment`, `--parent-run-id`, `--tags`),
narrowed by `--run-params`. Writes: `--output-dir` (the task folders and `submission.json`), the same files as artifacts
`submission/` of one `submission` run, and a summary on stdout.
"""

from pipelines.options import command

main = command("submission", __doc__, "analysis.submission:run")
if __name__ == "__main__":
    main()  # before the imports below, so that --help and argument errors answer without loading pandas or mlflow

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click
import pandas as pd

from analysis import collect
from components import tracking
from components.errors import XstiltsInputError
from components.predictions import MANIFEST
from components.tasks import TASKS, get_task

REPORT = "submission.json"  # also marks a folder this command wrote, which a later run may empty and rewrite
ARTIFACT_PATH = "submission"
CONFIGURATION = (*collect.CONFIG, "seed")


@dataclass(frozen=True)
class TaskPlan:
    """What one task contributes: the chosen file of each language, or why the task is left out.

    Attributes:
        configuration: the runs' configuration (empty where the task has no runs or several configurations).
        files: language -> (run id, manifest entry) of its complete test prediction file.
        missing: language -> why it has no complete test prediction file.
        problem: why the task as a whole cannot be assembled ("" when only languages are missing).
    """

    task: str
    configuration: dict[str, str]
    files: dict[str, tuple[str, dict]]
    missing: dict[str, str]
    problem: str = ""

    @property
    def complete(self) -> bool:
        return not self.problem and not self.missing

    def left_out(self) -> dict:
        return {"problem": self.problem} if self.problem else {"languages": self.missing}


def plan_task(task: str, runs: pd.DataFrame, work_dir: Path) -> TaskPlan:
    """Chooses, for each language of `task`, the newest complete test prediction file among `runs` (the task's
    FINISHED `evaluate` runs, `mlflow.search_runs` rows); manifests are downloaded under `work_dir`."""
    if runs.empty:
        return TaskPlan(task, {}, {}, {}, f"no FINISHED `evaluate` run of {task} in the selection")
    configurations = runs.reindex(columns=[f"params.{key}" for key in CONFIGURATION]).fillna("").drop_duplicates()
    if len(configurations) > 1:
        listed = "; ".join(", ".join(f"{key}={value}" for key, value in zip(CONFIGURATION, row))
                           for row in configurations.itertuples(index=False))
        return TaskPlan(task, {}, {}, {}, f"{len(configurations)} configurations evaluated {task} ({listed}); choose "
                                          "one with run_params")
    manifests, without_manifest = {}, []
    for run_id in runs.sort_values("start_time", ascending=False)["run_id"]:
        try:
            manifests[run_id] = json.loads(_download(run_id, f"{task}/{MANIFEST}", work_dir).read_text("utf-8"))
        except XstiltsInputError:
            without_manifest.append(run_id)
    files, missing = {}, {}
    for lang in get_task(task).langs:
        entries = [(run_id, entry) for run_id, listed in manifests.items() for entry in listed if entry["lang"] == lang]
        chosen = next(((run_id, entry) for run_id, entry in entries if entry["split"] == "test" and entry["complete"]),
                      None)
        if chosen:
            files[lang] = chosen
        else:
            missing[lang] = _why_missing(entries, without_manifest)
    return TaskPlan(task, dict(zip(CONFIGURATION, configurations.iloc[0])), files, missing)


def _why_missing(entries: list[tuple[str, dict]], without_manifest: list[str]) -> str:
    if entries:
        run_id, entry = entries[0]
        held = ("dev items" if entry["split"] != "test"
                else f"{entry['n_items']} of the {entry['split_items']} test items")
        reason = f"the newest file holds {held} ({entry['file']}, run {run_id})"
    else:
        reason = "no prediction file"
    if without_manifest:
        reason += (f"; not used: {len(without_manifest)} run(s) without a {MANIFEST}, evaluated before prediction "
                   f"files were named by what they hold ({', '.join(without_manifest)})")
    return reason


def _download(run_id: str, artifact: str, work_dir: Path) -> Path:
    return tracking.download_artifact(run_id, f"{tracking.PREDICTIONS_ARTIFACT}/{artifact}", work_dir / run_id)


def write_submission(plans: list[TaskPlan], folder: Path, work_dir: Path, source: str) -> dict:
    """Copies the files of every complete plan to `<folder>/<task>/test-<lang>.<ext>`, writes `submission.json`
    and returns its content."""
    written = {}
    for plan in (plan for plan in plans if plan.complete):
        (folder / plan.task).mkdir(parents=True)
        for lang, (run_id, entry) in plan.files.items():
            shutil.copyfile(_download(run_id, f"{plan.task}/{entry['file']}", work_dir),
                            folder / plan.task / f"test-{lang}.{entry['extension']}")
        written[plan.task] = {"configuration": plan.configuration,
                              "files": {lang: {"run_id": run_id, "items": entry["n_items"]}
                                        for lang, (run_id, entry) in plan.files.items()}}
    report = {"source": source, "written": written,
              "left_out": {plan.task: plan.left_out() for plan in plans if not plan.complete}}
    (folder / REPORT).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def summary(report: dict, folder: Path) -> str:
    lines = [f"{task}: {len(written['files'])} languages -> {folder / task}" for task, written in
             report["written"].items()]
    for task, left_out in report["left_out"].items():
        why = left_out.get("problem") or "; ".join(f"{lang}: {reason}"
                                                   for lang, reason in left_out["languages"].items())
        lines.append(f"{task}: left out ({why})")
    return "\n".join(lines)


def check_output_dir(folder: Path) -> None:
    """Refuses a folder that holds anything but an earlier submission (it is emptied before writing)."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir()) and not (folder / REPORT).is_file()):
        raise XstiltsInputError(f"output folder {folder} is not empty and was not written by the submission command "
                                f"(no {REPORT}); expected a new or empty folder, or an earlier submission's")


def _with_params(runs: pd.DataFrame, params: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    for key, value in params:
        runs = runs[runs.get(f"params.{key}", pd.Series(index=runs.index, dtype=object)) == value]
    return runs


def _task_names(text: str) -> list[str]:
    return [get_task(name.strip()).name for name in text.split(",") if name.strip()]


def run(experiment: str, parent_run_id: str, tags: str, run_params: str, tasks: str, output_dir: str) -> None:
    selection = collect.RunSelection(experiment, collect.check_run_id(parent_run_id), collect.parse_tags(tags))
    try:
        wanted_params = collect.parse_tags(run_params)
    except XstiltsInputError as error:
        raise XstiltsInputError(f"run_params: {error}") from None
    wanted_tasks = _task_names(tasks)
    folder = Path(output_dir)
    check_output_dir(folder)
    finished, _, where = collect.finished_runs(selection)
    runs = _with_params(finished, wanted_params)
    if runs.empty:
        raise XstiltsInputError(f"none of the {len(finished)} FINISHED `evaluate` runs of {where} has the params "
                                f"{run_params}")
    source = f"{where}" + (f", params {run_params}" if run_params else "")
    with tempfile.TemporaryDirectory(prefix="xstilts-submission-") as work_dir:
        plans = [plan_task(task, runs[runs["params.task"] == task], Path(work_dir))
                 for task in wanted_tasks or sorted(set(runs["params.task"]) & set(TASKS))]
        if not any(plan.complete for plan in plans):
            left_out = {plan.task: plan.left_out() for plan in plans}
            raise XstiltsInputError(f"no task of {source} has complete test predictions in every language, so no "
                                    f"submission is written: {summary({'written': {}, 'left_out': left_out}, folder)}")
        if folder.exists():
            shutil.rmtree(folder)
        report = write_submission(plans, folder, Path(work_dir), source)
    params = {"experiment": experiment, "parent_run_id": parent_run_id, "tags": tags, "run_params": run_params,
              "tasks": tasks, "written_tasks": ",".join(report["written"]),
              "left_out_tasks": ",".join(report["left_out"])}
    with tracking.phase_run("submission", params):
        tracking.log_dir(folder, ARTIFACT_PATH)
    click.echo(summary(report, folder))
