"""`main -P executor=ray` against a tracking server on PostgreSQL that proxies artifacts (the nodes share nothing
else): on a simulated 3-node Ray cluster (`ray.cluster_utils.Cluster`, fake GPUs), on a head started with the `ray`
CLI (addresses `auto` and `ray://`), and on a cluster that loses the node running a step."""

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from components.settings import DATA_ROOT_ENV, PROJECT_ROOT, data_root
from pipelines import main
from test_grid import error_lines, running_tracking_server
from test_main import STEP_LINE, comparable_metrics

NODE_GPUS = (1, 2, 2)  # head and two workers
FAST = "epochs: 1, batch_size: 16, max_length: 64, max_train_examples: 32"
WORKER_HOOKS = Path(__file__).parent / "worker_hooks"


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


def study(tmp_path: Path, tiny_model_dir: Path, extra: str = "", arms: str = f"[none, {{task: anli, {FAST}}}]",
          langs: str = "en,sw") -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(f"model: {tiny_model_dir}\nseeds: [3]\nmethods: [full]\nintermediate: {arms}\n"
                    f"targets: [{{task: xnli, {FAST}, evaluate: {{langs: '{langs}'}}}}]\n{extra}", encoding="utf-8")
    return path


def small_study(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """Two steps: a target run and its evaluation."""
    return study(tmp_path, tiny_model_dir, arms="[none]", langs="en")


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
    address = f"127.0.0.1:{free_port()}"  # nothing listens on it
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def with_this_interpreter_first_on_path() -> str:
    """PATH for a node's processes: the MLproject commands run `python -m ...`."""
    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


@dataclass(frozen=True)
class CliHead:
    gcs_address: str  # host:port, what RAY_ADDRESS holds on a cluster's machines
    client_port: int  # Ray Client's server (ray://)
    node_id: str
    authentication: dict[str, str]  # what a driver's environment needs to be let in


def end_process_tree(root: psutil.Process) -> list[psutil.Process]:
    """Ends `root` and every process it started, by their ids (SIGTERM, then SIGKILL); those still alive after."""
    tree = [root, *root.children(recursive=True)]
    for end in (psutil.Process.terminate, psutil.Process.kill):
        for process in reversed(tree):  # children first: they are not left to a parent that no longer reaps them
            try:
                end(process)  # psutil checks that the id still names the same process
            except psutil.NoSuchProcess:
                pass
        deadline = time.monotonic() + 10
        while any(map(running, tree)) and time.monotonic() < deadline:
            time.sleep(0.2)
    return [process for process in tree if running(process)]


def running(process: psutil.Process) -> bool:
    """Alive, zombies aside (this container's init may not reap the orphans whose parent died first)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def ray_head():
    """A one-node Ray cluster started as on a cluster's first machine, `ray start --head` (with --block, so that
    every Ray process it starts is its descendant), on 127.0.0.1 only, in a temp folder of its own, and with Ray
    2.60's token authentication (its default where ~/.ray/auth_token exists) on a token of its own. It is ended
    through its own process tree, not `ray stop`, which ends every Ray process of the machine (other tests' too)."""
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths are inside, and limited
    gcs_port, client_port, agent_port = free_port(), free_port(), free_port()
    authentication = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    environment = {**os.environ, "PATH": with_this_interpreter_first_on_path(), DATA_ROOT_ENV: str(data_root()),
                   **authentication}
    environment.pop("RAY_ADDRESS", None)
    log = temp_dir / "ray-start.log"
    with log.open("w") as output:
        head = subprocess.Popen(
            [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
             f"--port={gcs_port}", f"--ray-client-server-port={client_port}",
             f"--dashboard-agent-listen-port={agent_port}", "--num-cpus=2", f"--temp-dir={temp_dir}",
             "--include-dashboard=false", "--disable-usage-stats"],
            env=environment, stdout=output, stderr=subprocess.STDOUT)
    tree = psutil.Process(head.pid)
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        raylet_log = temp_dir / "session_latest" / "logs" / "raylet.out"
        [node_id] = set(re.findall(r"Setting node ID node_id=([0-9a-f]{56})", raylet_log.read_text()))
        yield CliHead(f"127.0.0.1:{gcs_port}", client_port, node_id, authentication)
    finally:
        left = end_process_tree(tree)
        head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not left, [process.cmdline() for process in left]


@pytest.fixture(scope="module")
def small_grid_reference(tracking_server, tiny_model_dir, tmp_path_factory) -> dict[str, dict[str, float]]:
    """Each step's metrics of the small study run by the local executor: what every Ray run of it must give."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", tracking_server)
        patch.setenv("MLFLOW_EXPERIMENT_NAME", "small-local")
        patch.setenv("PATH", with_this_interpreter_first_on_path())
        result = run_main(small_study(tmp_path_factory.mktemp("local"), tiny_model_dir))
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_server)
    return {label: comparable_metrics(client, run_id) for _status, label, run_id in STEP_LINE.findall(result.output)}


def check_every_step_ran_like_the_reference(client: MlflowClient, output: str,
                                            reference: dict[str, dict[str, float]]) -> dict[str, Run]:
    """Every step ran (none cached) and FINISHED with the reference metrics; the step runs by label."""
    steps = {label: (status, run_id) for status, label, run_id in STEP_LINE.findall(output)}
    assert len(reference) == 2 and steps.keys() == reference.keys(), output
    assert {status for status, _run_id in steps.values()} == {"done"}, output
    runs = {label: client.get_run(run_id) for label, (_status, run_id) in steps.items()}
    assert {run.info.status for run in runs.values()} == {"FINISHED"}
    for label, (_status, run_id) in steps.items():
        assert comparable_metrics(client, run_id) == reference[label], label
    return runs


def driver_environment(tracking_server: str, experiment_name: str, **extra: str) -> dict[str, str]:
    environment = {**os.environ, "MLFLOW_TRACKING_URI": tracking_server, "MLFLOW_EXPERIMENT_NAME": experiment_name,
                   "PATH": with_this_interpreter_first_on_path(), "PYTHONPATH": str(PROJECT_ROOT), **extra}
    if "RAY_ADDRESS" not in extra:
        environment.pop("RAY_ADDRESS", None)
    return environment


def start_driver(config: Path, address: str, environment: dict[str, str]) -> subprocess.Popen:
    """`main --executor ray` in a process of its own, as a user starts it (Ray's state is per process); its output
    goes to driver.log beside the config (Ray forwards the steps' output to it: a pipe could fill up)."""
    with driver_log(config).open("w") as log:
        return subprocess.Popen([sys.executable, "-m", "pipelines.main", "--config", str(config), "--executor", "ray",
                                 "--ray-address", address], cwd=config.parent, env=environment, stdout=log,
                                stderr=subprocess.STDOUT, text=True)


def driver_log(config: Path) -> Path:
    return config.parent / "driver.log"


def finish(driver: subprocess.Popen, config: Path) -> subprocess.CompletedProcess:
    try:
        driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    return subprocess.CompletedProcess(driver.args, driver.returncode, driver_log(config).read_text(encoding="utf-8"))


@pytest.mark.parametrize("form", ["auto", "ray://", "empty"])
def test_a_head_started_with_the_ray_cli_runs_the_grid_at_address_auto_and_through_ray_client(
        form, ray_head, tracking_server, small_grid_reference, tiny_model_dir, tmp_path):
    """The driver is a process of its own, as a user starts it on one of the cluster's machines (`auto`, with
    RAY_ADDRESS set as on a cluster node) or anywhere that reaches the head's client port (`ray://`). An empty address
    starts a local instance of the driver's own even there: the steps do not run on the head."""
    experiment_name = f"cli-head-{form}"
    environment = driver_environment(tracking_server, experiment_name, **ray_head.authentication)
    address = {"auto": "auto", "ray://": f"ray://127.0.0.1:{ray_head.client_port}", "empty": ""}[form]
    if form != "ray://":
        environment["RAY_ADDRESS"] = ray_head.gcs_address
    config = small_study(tmp_path, tiny_model_dir)
    driver = finish(start_driver(config, address, environment), config)
    assert driver.returncode == 0, driver.stdout
    where = f"the Ray cluster at {address}" if address else "a local Ray instance"
    assert f"executor ray: {where}, 1 node(s), 0 GPU(s), " in driver.stdout, driver.stdout
    client = MlflowClient(tracking_server)
    runs = check_every_step_ran_like_the_reference(client, driver.stdout, small_grid_reference)
    # The steps ran with no GPU and artifacts on the server: on the CLI's head, not on a Ray instance of their own,
    # unless the address was empty.
    nodes = {run.data.tags["xlt.node"] for run in runs.values()}
    on_head = {f"{socket.gethostname()}/{ray_head.node_id[:8]}"}
    assert (nodes != on_head and len(nodes) == 1) if form == "empty" else nodes == on_head, nodes
    assert {run.data.tags["xlt.devices"] for run in runs.values()} == {"cpu"}
    # Ray sets OMP_NUM_THREADS to a task's CPUs (one by default), which the step process inherits.
    assert {run.data.tags["xlt.cpu_threads"] for run in runs.values()} == {"1"}
    assert all(run.info.artifact_uri.startswith("mlflow-artifacts:/") for run in runs.values())
    experiment = client.get_experiment_by_name(experiment_name).experiment_id
    assert client.search_runs([experiment], "attributes.status != 'FINISHED'") == []


def test_a_driver_without_the_token_of_a_head_with_token_authentication_is_told_what_to_set(
        ray_head, tracking_server, tiny_model_dir, tmp_path):
    environment = driver_environment(tracking_server, "no-token", RAY_ADDRESS=ray_head.gcs_address)
    for variable in ray_head.authentication:
        environment.pop(variable, None)
    config = small_study(tmp_path, tiny_model_dir)
    driver = finish(start_driver(config, "auto", environment), config)
    assert driver.returncode == 2, driver.stdout
    [line] = error_lines(driver.stdout)
    assert line.startswith("xstilts: error: ray_address 'auto': could not connect to a Ray cluster there "
                           "(ConnectionError: "), line
    assert line.endswith("; if the cluster has token authentication, set RAY_AUTH_MODE=token and the token "
                         "(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) in this environment"), line
    assert MlflowClient(tracking_server).get_experiment_by_name("no-token") is None


def remove_node_mid_step(cluster, doomed, hold_dir: Path, driver: subprocess.Popen) -> dict:
    """Once the held target step process (tests/worker_hooks) has begun training on `doomed`, removes that node
    (its raylet and every process on it end), notes whether the step process died with it, and adds a node that
    can take the retry. The release and the new node come whatever happens, so the study cannot hang."""
    seen = {}
    try:
        deadline = time.monotonic() + 300
        while not (hold_dir / "held").exists() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        run_id, pid = (hold_dir / "held").read_text(encoding="utf-8").split()
        seen["held_run_id"] = run_id
        step_process = psutil.Process(int(pid))
        cluster.remove_node(doomed)
        deadline = time.monotonic() + 30
        while running(step_process) and time.monotonic() < deadline:
            time.sleep(0.2)
        seen["step_process_died"] = not running(step_process)
    finally:
        (hold_dir / "release").touch()
        seen["new_node_id"] = cluster.add_node(num_cpus=1, num_gpus=1).node_id
    return seen


def test_a_step_whose_node_is_removed_mid_step_ends_failed_and_its_retry_on_another_node_finishes(
        tracking_server, small_grid_reference, tiny_model_dir, tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    hold_dir = tmp_path / "hold"
    hold_dir.mkdir()
    # What the nodes' processes inherit: the step processes find the interpreter, the data bundle and the hold.
    monkeypatch.setenv("PATH", with_this_interpreter_first_on_path())
    monkeypatch.setenv(DATA_ROOT_ENV, str(data_root()))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(WORKER_HOOKS), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("XSTILTS_TEST_HOLD_STEP_DIR", str(hold_dir))
    # The head has no GPU and every step asks for one (the default where the cluster has GPUs): the steps run on
    # the GPU node, the one removed, and after it on the node added then.
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False})
    try:
        doomed = cluster.add_node(num_cpus=1, num_gpus=1)
        cluster.wait_for_nodes()
        config = small_study(tmp_path, tiny_model_dir)
        driver = start_driver(config, cluster.address, driver_environment(tracking_server, "node-removed"))
        try:
            seen = remove_node_mid_step(cluster, doomed, hold_dir, driver)
        finally:
            result = finish(driver, config)
    finally:
        cluster.shutdown()
    assert result.returncode == 0, result.stdout
    assert seen["step_process_died"], "the step process outlived its node"
    client = MlflowClient(tracking_server)
    held = client.get_run(seen["held_run_id"])
    assert held.info.status == "FAILED" and held.data.tags["xlt.node"].endswith(doomed.node_id[:8])
    assert "retry   target xnli full from none seed 3 (attempt 2 of 2)" in result.stdout, result.stdout
    runs = check_every_step_ran_like_the_reference(client, result.stdout, small_grid_reference)
    assert {run.data.tags["xlt.node"].rpartition("/")[2] for run in runs.values()} == {seen["new_node_id"][:8]}
    experiment = client.get_experiment_by_name("node-removed").experiment_id
    assert [run.info.run_id for run in client.search_runs([experiment], "attributes.status != 'FINISHED'")] == [
        held.info.run_id]
