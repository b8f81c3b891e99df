"""`main`: runs a study config's phase chain, every phase a child run of one parent run.

For now a study is one chain: `intermediate` (optional) -> `target` -> `evaluate`; each phase is launched as its
MLproject entry point with the local env manager and hands on its run id. Reads: `--config` (YAML).
"""

from pathlib import Path

import click
import mlflow
import yaml

from components import tracking
from components.errors import XstiltsInputError
from components.settings import PROJECT_ROOT
from pipelines.cli import entry_point

PHASES = ("intermediate", "target", "evaluate")


def read_chain(path: Path) -> dict[str, dict]:
    """The phases of a config file, with clear errors for a missing file, bad YAML or unknown phases."""
    if not path.is_file():
        raise XstiltsInputError(f"config file {path} does not exist")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise XstiltsInputError(f"{path}: not valid YAML ({error})") from None
    chain = (config or {}).get("chain")
    if not isinstance(chain, dict) or "target" not in chain:
        raise XstiltsInputError(f"{path}: expected a `chain:` mapping with at least a `target:` phase")
    unknown = sorted(set(chain) - set(PHASES))
    if unknown:
        raise XstiltsInputError(f"{path}: unknown phase(s) {', '.join(unknown)} under `chain:`; expected {PHASES}")
    phases = {phase: dict(chain.get(phase) or {}) for phase in PHASES if phase in chain}
    for phase, parameters in phases.items():
        declared = entry_point_parameters(phase)
        unknown = sorted(set(parameters) - declared)
        if unknown:
            raise XstiltsInputError(f"{path}: unknown parameter(s) {', '.join(unknown)} for phase {phase}; "
                                    f"expected some of: {', '.join(sorted(declared))}")
    return phases


def entry_point_parameters(entry: str) -> set[str]:
    """The parameters the MLproject declares for `entry`."""
    project = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text(encoding="utf-8"))
    return set(project["entry_points"][entry]["parameters"])


def launch(entry: str, parameters: dict) -> str:
    """Runs one entry point synchronously as a child of the active run; returns its run id."""
    try:
        submitted = mlflow.projects.run(uri=str(PROJECT_ROOT), entry_point=entry, env_manager="local",
                                        parameters={key: str(value) for key, value in parameters.items()},
                                        experiment_id=mlflow.active_run().info.experiment_id, synchronous=True)
    except mlflow.exceptions.ExecutionException as error:
        raise XstiltsInputError(f"the {entry} phase failed; its own error is printed above ({error})") from None
    return submitted.run_id


@click.command()
@click.option("--config", "config_path", default=str(PROJECT_ROOT / "configs" / "demo.yaml"), show_default=True)
@entry_point
def main(config_path: str) -> None:
    chain = read_chain(Path(config_path))
    with tracking.phase_run("main", {"config": Path(config_path).name}):
        tracking.log_text(Path(config_path).read_text(encoding="utf-8"), "config.yaml")
        init_run_id = launch("intermediate", chain["intermediate"]) if "intermediate" in chain else ""
        train_run_id = launch("target", {**chain["target"], "init_run_id": init_run_id})
        evaluate_run_id = launch("evaluate", {**chain.get("evaluate", {}), "train_run_id": train_run_id})
    click.echo(f"intermediate {init_run_id or '-'} -> target {train_run_id} -> evaluate {evaluate_run_id}")
    print_summary({"intermediate": init_run_id, "target": train_run_id, "evaluate": evaluate_run_id})


def print_summary(run_ids: dict[str, str]) -> None:
    """Wall time and peak memory per phase, then the zero-shot metrics per language."""
    for phase, run_id in run_ids.items():
        if run_id:
            seconds, metrics = tracking.run_summary(run_id)
            click.echo(f"{phase:>12}: {seconds:7.1f} s wall, peak RSS {metrics['peak_rss_mb']:7.0f} MB  ({run_id})")
    _, metrics = tracking.run_summary(run_ids["evaluate"])
    for key in sorted(key for key in metrics if key.startswith("eval/")):
        click.echo(f"{key:>32}: {metrics[key]:6.2f}")


if __name__ == "__main__":
    main()
