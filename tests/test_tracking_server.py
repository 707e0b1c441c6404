"""Runs on an MLflow tracking server, as a team shares them: `mlflow server` on 127.0.0.1 with a
SQLite backend and artifacts served from a temporary folder. Short trainings are read back
through the server's REST API (params, metrics, the model file), `vaeedof runs` compares two,
and a server that is down, or stops answering, costs one line and never the run's outputs. The
server is stopped by the process group of the PID started here, also when a test fails."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from vaeedof.cli import main
from vaeedof.errors import VaeedofError
from vaeedof.training.train import train

from .synthetic import random_vae
from .test_train import _params, latent_set  # noqa: F401  (latent_set: the module's fixture)

pytestmark = pytest.mark.slow
MLFLOW = Path(sys.executable).parent / "mlflow"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(uri: str, path: str, **query) -> dict:
    with urllib.request.urlopen(f"{uri}{path}?{urllib.parse.urlencode(query)}", timeout=30) as answer:
        return json.loads(answer.read())


def _post(uri: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{uri}{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow-server")
    uri = f"http://127.0.0.1:{_free_port()}"
    log = open(folder / "server.log", "w")
    process = subprocess.Popen(
        [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", uri.rsplit(":", 1)[1], "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", str(folder / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # its own group: all of it stops
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2).close()
                break
            except (urllib.error.URLError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    said = (folder / "server.log").read_text()[-3000:]
                    pytest.fail(f"mlflow server did not start:\n{said}")
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        time.sleep(1)  # the group's other processes (uvicorn, job runners) follow theirs
        try:
            os.killpg(process.pid, signal.SIGKILL)  # any left over
        except ProcessLookupError:
            pass
        log.close()


def test_trainings_and_an_evaluation_on_a_server_read_back_through_its_rest_api(
        server, latent_set, tmp_path, monkeypatch, capsys):  # noqa: F811
    patches, cache = latent_set
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    weights = train(_params(steps=10), cache, patches, tmp_path / "a", vae_loader=random_vae)
    train(_params(steps=10, lr=2e-3), cache, patches, tmp_path / "b", vae_loader=random_vae)

    experiment = _get(server, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="vaeedof")
    runs = _post(server, "/api/2.0/mlflow/runs/search",
                 {"experiment_ids": [experiment["experiment"]["experiment_id"]],
                  "filter": "tags.kind = 'train'", "order_by": ["attributes.start_time ASC"]})["runs"]
    assert len(runs) == 2 and {r["info"]["status"] for r in runs} == {"FINISHED"}
    first = runs[0]
    run_id = first["info"]["run_id"]
    params = {p["key"]: p["value"] for p in first["data"]["params"]}
    assert params["train.steps"] == "10" and params["train.lr"] == "0.001"
    history = _get(server, "/api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key="loss")
    assert [m["step"] for m in history["metrics"]] == [5, 10]
    listed = {f["path"] for f in _get(server, "/api/2.0/mlflow/artifacts/list", run_id=run_id)["files"]}
    assert {"fusion_ema.safetensors", "fusion_ema.json", "params.used.yaml"} <= listed
    # The model file itself, served by the server from its artifact folder, as training wrote it.
    artifact_uri = first["info"]["artifact_uri"]
    assert artifact_uri.startswith("mlflow-artifacts:/")
    path = artifact_uri.removeprefix("mlflow-artifacts:/").lstrip("/") + "/fusion_ema.safetensors"
    with urllib.request.urlopen(f"{server}/api/2.0/mlflow-artifacts/artifacts/{path}", timeout=60) as answer:
        assert answer.read() == weights.read_bytes()

    # An evaluation of the first model: its own run, the training's child, with its report.
    from vaeedof.tracking import log_evaluation

    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "table.md").write_text("| method | PSNR |\n|---|---|\n| hybrid | 30.00 |\n")
    summary = {"methods": {"hybrid": {"PSNR": 30.0}, "stackmff-v3": {"PSNR": 29.0}},
               "checkpoint": {"mlflow_run_id": run_id, "sha256": "abc"}}
    evaluation = log_evaluation(summary, {"vae": {"name": "taef2"}, "infer": {"tile": 64}}, reports)
    logged = _get(server, "/api/2.0/mlflow/runs/get", run_id=evaluation)["run"]
    assert {m["key"]: m["value"] for m in logged["data"]["metrics"]} == {"hybrid.PSNR": 30.0,
                                                                         "stackmff_v3.PSNR": 29.0}
    tags = {t["key"]: t["value"] for t in logged["data"]["tags"]}
    assert tags["kind"] == "evaluation" and tags["mlflow.parentRunId"] == run_id
    assert [f["path"] for f in _get(server, "/api/2.0/mlflow/artifacts/list", run_id=evaluation)["files"]] \
        == ["table.md"]

    capsys.readouterr()  # what training printed (MLflow names each run's page)
    main(["runs", "--kind", "train", "--tracking-uri", server])
    table = capsys.readouterr().out.splitlines()
    assert "train.lr" in table[0] and len(table) == 4, table  # header, rule, two runs
    assert "0.002" in table[2] and "0.001" in table[3]


def test_a_server_that_is_down_is_one_line_and_nothing_is_lost(tmp_path, latent_set, monkeypatch,  # noqa: F811
                                                                capsys):
    patches, cache = latent_set
    down = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", down)
    (tmp_path / "out").mkdir()
    (tmp_path / "out/keep.txt").write_text("mine")
    with pytest.raises(VaeedofError, match=f"MLflow tracking store {down} is unreachable") as caught:
        train(_params(steps=5), cache, patches, tmp_path / "out", vae_loader=random_vae)
    assert str(caught.value) == (f"MLflow tracking store {down} is unreachable or not writable "
                                 "(connection refused); fix MLFLOW_TRACKING_URI or pass --no-mlflow")
    assert (tmp_path / "out/keep.txt").read_text() == "mine"
    capsys.readouterr()
    assert main(["runs", "--tracking-uri", down]) == 2
    err = capsys.readouterr().err
    assert err == f"vaeedof: error: MLflow tracking store {down} is unreachable (connection refused)\n"


def test_a_server_lost_during_training_costs_a_warning_not_the_model(server, tmp_path, latent_set,  # noqa: F811
                                                                     monkeypatch, caplog):
    from mlflow.tracking import MlflowClient

    from vaeedof.logs import get_logger

    patches, cache = latent_set
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)

    from vaeedof import tracking

    def refused(*args, **kwargs):
        raise ConnectionRefusedError(f"{server}: connection refused")

    started = tracking.Tracker.start

    def start_then_lose_the_server(self, *args, **kwargs):
        run_id = started(self, *args, **kwargs)
        monkeypatch.setattr(MlflowClient, "log_batch", refused)
        return run_id

    monkeypatch.setattr(tracking.Tracker, "start", start_then_lose_the_server)
    logger = get_logger()
    logger.addHandler(caplog.handler)
    try:
        weights = train(_params(steps=10), cache, patches, tmp_path / "m", vae_loader=random_vae)
    finally:
        logger.removeHandler(caplog.handler)
    assert weights.exists() and (tmp_path / "m/fusion_ema.json").exists()
    lost = {r.getMessage() for r in caplog.records if "stopped answering" in r.getMessage()}
    assert len(lost) == 1, lost
    assert next(iter(lost)).startswith(f"MLflow tracking store {server} stopped answering (")
