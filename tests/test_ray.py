"""`main -P executor=ray` on a simulated 3-node Ray cluster (`ray.cluster_utils.Cluster`, fake GPUs) against a
tracking server on PostgreSQL that proxies artifacts: the nodes share nothing else."""

import os
import re
import socket
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from components.settings import DATA_ROOT_ENV, data_root
from pipelines import main
from test_grid import error_lines, running_tracking_server
from test_main import STEP_LINE, comparable_metrics

NODE_GPUS = (1, 2, 2)  # head and two workers


@pytest.fixture(scope="module")
def tracking_server():
    with running_tracking_server(5058) as uri:  # not test_grid's port: the two modules may run at once
        yield uri


@pytest.fixture(scope="module")
def ray_cluster():
    """Three Ray nodes on this machine, started as a cluster's nodes would be: with this interpreter's environment
    first on PATH (the MLproject commands run `python -m ...`) and the node's own data bundle path."""
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        patch.setenv(DATA_ROOT_ENV, str(data_root()))
        head, *workers = NODE_GPUS
        cluster = Cluster(initialize_head=True, connect=False,
                          head_node_args={"num_cpus": 2, "num_gpus": head, "include_dashboard": False})
        for gpus in workers:
            cluster.add_node(num_cpus=2, num_gpus=gpus)
        cluster.wait_for_nodes()
        yield cluster
        cluster.shutdown()


def study(tmp_path: Path, tiny_model_dir: Path, extra: str = "") -> Path:
    fast = "epochs: 1, batch_size: 16, max_length: 64, max_train_examples: 32"
    path = tmp_path / "study.yaml"
    path.write_text(f"model: {tiny_model_dir}\nseeds: [3]\nmethods: [full]\n"
                    f"intermediate: [none, {{task: anli, {fast}}}]\n"
                    f"targets: [{{task: xnli, {fast}, evaluate: {{langs: 'en,sw'}}}}]\n{extra}", encoding="utf-8")
    return path


def run_main(path: Path, *args: str):
    return CliRunner().invoke(main.main, ["--config", str(path), *args])


def kill_first_target_mid_step(client: MlflowClient, killed: list[str], deadline: float) -> None:
    """SIGKILLs the process of the first `target` step once its entry point has started (its run has its phase
    tag), as the OOM killer or a lost node would."""
    while time.monotonic() < deadline:
        for run in client.search_runs([experiment.experiment_id for experiment in client.search_experiments()],
                                      "attributes.status = 'RUNNING' and tags.`xlt.phase` = 'target'"):
            for process in psutil.process_iter():
                try:
                    if process.environ().get("MLFLOW_RUN_ID") == run.info.run_id and "python" in process.name():
                        process.kill()
                        killed.append(run.info.run_id)
                        return
                except (psutil.AccessDenied, psutil.NoSuchProcess):
                    continue
        time.sleep(0.2)


def test_a_grid_on_a_three_node_cluster_survives_a_killed_step_and_matches_the_local_executor(
        ray_cluster, tracking_server, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    path = study(tmp_path, tiny_model_dir)
    client = MlflowClient(tracking_server)
    killed: list[str] = []
    killer = threading.Thread(target=kill_first_target_mid_step, args=(client, killed, time.monotonic() + 600))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "on-ray")
    killer.start()
    on_ray = run_main(path, "--executor", "ray", "--ray-address", ray_cluster.address)
    killer.join()
    assert on_ray.exit_code == 0, on_ray.output
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "local")
    local = run_main(path, "--workers", "2")
    assert local.exit_code == 0, local.output

    ray_steps = {label: run_id for status, label, run_id in STEP_LINE.findall(on_ray.output)}
    local_steps = {label: run_id for status, label, run_id in STEP_LINE.findall(local.output)}
    assert len(ray_steps) == 5 and ray_steps.keys() == local_steps.keys(), on_ray.output
    runs = [client.get_run(run_id) for run_id in ray_steps.values()]
    # The killed step's run ended FAILED, and its retry is the step's FINISHED run.
    [killed_run_id] = killed
    assert client.get_run(killed_run_id).info.status == "FAILED"
    assert killed_run_id not in ray_steps.values() and "retry   " in on_ray.output
    experiment = client.get_experiment_by_name("on-ray").experiment_id
    assert [run.info.status for run in client.search_runs([experiment], "attributes.status != 'FINISHED'")] == [
        "FAILED"]
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert all(run.info.artifact_uri.startswith("mlflow-artifacts:/") for run in runs)
    # Ray's placement: every step saw one GPU, steps ran on more than one node, no GPU was shared at once.
    placements = [(run.data.tags["xlt.node"], run.data.tags["xlt.devices"], run.info.start_time, run.info.end_time)
                  for run in runs]
    assert all(re.fullmatch(r"\d", devices) for _node, devices, _start, _end in placements), placements
    assert len({node for node, *_ in placements}) > 1, placements
    for index, (node, devices, start, end) in enumerate(placements):
        for other_node, other_devices, other_start, other_end in placements[index + 1:]:
            overlap = start < other_end and other_start < end
            assert not (overlap and (node, devices) == (other_node, other_devices)), placements
    for label, run_id in ray_steps.items():
        assert comparable_metrics(client, run_id) == comparable_metrics(client, local_steps[label]), label


def test_an_address_where_no_ray_cluster_answers_is_named_within_30_s(tracking_server, tmp_path,
                                                                        tiny_model_dir, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "unreachable")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    started = time.monotonic()
    result = run_main(study(tmp_path, tiny_model_dir), "--executor", "ray", "--ray-address", address)
    assert time.monotonic() - started < 30
    assert result.exit_code == 2
    [line] = error_lines(result.output)
    assert f"ray_address '{address}': nothing answers at {address}" in line
    assert MlflowClient(tracking_server).get_experiment_by_name("unreachable") is None


def test_a_resource_request_no_node_has_is_refused_before_anything_trains(ray_cluster, tracking_server, tmp_path,
                                                                        tiny_model_dir, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "refused")
    path = study(tmp_path, tiny_model_dir, "resources: {target: {gpus: 3}, evaluate: {cpus: 1}}\n")
    result = run_main(path, "--executor", "ray", "--ray-address", ray_cluster.address)
    assert result.exit_code == 2, result.output
    [line] = error_lines(result.output)
    # The largest node has 2 GPUs (NODE_GPUS); the first target of the grid is the one without an intermediate run.
    assert "step target xnli full from none seed 3: resources.target {gpus: 3, cpus: 1}: more than any node of the Ray cluster " \
           f"at {ray_cluster.address} has" in line, line
    assert MlflowClient(tracking_server).get_experiment_by_name("refused") is None
