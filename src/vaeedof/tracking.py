"""MLflow tracking: an absolute tracking URI (default: SQLite in the project), one run per
training that a resumed training continues, metrics logged in batches."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

EXPERIMENT = "vaeedof"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else an absolute sqlite:/// URI beside the working directory
    (MLflow's own default is relative to wherever a process happens to start)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:500]
    return flat


class Tracker:
    """A thin MLflow wrapper; a disabled tracker (other ranks) does nothing."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.run_id: str | None = None
        self._pending: list = []

    def start(self, run_name: str, tags: dict, params: dict, run_id: str | None = None) -> str | None:
        if not self.enabled:
            return None
        import mlflow

        mlflow.set_tracking_uri(tracking_uri())
        mlflow.set_experiment(EXPERIMENT)
        run = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        if not run_id:
            mlflow.log_params(flatten(params))
        return self.run_id

    def metrics(self, values: dict[str, float], step: int) -> None:
        if self.enabled:
            self._pending.append((values, step))

    def flush(self) -> None:
        if not (self.enabled and self._pending):
            return
        import time

        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for values, step in self._pending
                 for key, value in values.items()]
        client = MlflowClient(tracking_uri())
        for start in range(0, len(batch), 1000):
            client.log_batch(self.run_id, metrics=batch[start:start + 1000])
        self._pending.clear()

    def artifact(self, path: str | os.PathLike, folder: str | None = None) -> None:
        if self.enabled:
            import mlflow

            mlflow.log_artifact(str(path), folder)

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled:
            import mlflow

            self.flush()
            mlflow.end_run(status)


def log_evaluation(summary: dict, params: dict, reports_dir: Path) -> str | None:
    """One MLflow run per evaluation, tagged with the training run it evaluates."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(EXPERIMENT)
    checkpoint = summary.get("checkpoint", {})
    tags = {"git_commit": git_commit(), "kind": "evaluation",
            "checkpoint_sha256": checkpoint.get("sha256", ""),
            "mlflow.parentRunId": checkpoint.get("mlflow_run_id") or ""}
    if not tags["mlflow.parentRunId"]:
        del tags["mlflow.parentRunId"]
    with mlflow.start_run(run_name="evaluate", tags=tags) as run:
        mlflow.log_params(flatten({"infer": params.get("infer", {}), "vae": params["vae"]}))
        metrics = {f"{method}.{name}".replace("-", "_"): value
                   for method, scores in summary["methods"].items() for name, value in scores.items()}
        mlflow.log_metrics(metrics)
        for name in ("metrics.json", "table.md", "per_image.csv"):
            if (reports_dir / name).exists():
                mlflow.log_artifact(str(reports_dir / name))
        return run.info.run_id
