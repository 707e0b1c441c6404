"""MLflow tracking: an absolute tracking URI (default: SQLite in the project), one run per
training that a resumed training continues, metrics logged in batches; and `vaeedof runs`, the
recent runs side by side (the parameters that differ, their final metrics)."""

from __future__ import annotations

import contextlib
import fnmatch
import os
from datetime import UTC, datetime
from pathlib import Path

from .errors import VaeedofError
from .provenance import git_commit

EXPERIMENT = "vaeedof"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else an absolute sqlite:/// URI beside the working directory
    (MLflow's own default is relative to wherever a process happens to start)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


# An unreachable server should fail in seconds, not after MLflow's default minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


def check_store(uri: str | None = None) -> None:
    """Fail before any expensive work when the tracking store cannot be written: reach it, create
    the experiment if needed, and write a tag on it."""
    import time

    import mlflow
    from mlflow.tracking import MlflowClient

    uri = uri or tracking_uri()
    hint = "fix MLFLOW_TRACKING_URI or pass --no-mlflow"
    if uri.startswith("sqlite:///"):
        # MLflow retries a SQLite file it cannot open for minutes; the file tells at once.
        try:
            open(uri[len("sqlite:///"):], "ab").close()
        except OSError as exc:
            raise VaeedofError(f"MLflow tracking store {uri} is unreachable or not writable "
                               f"({exc.strerror}); {hint}") from None
    try:
        mlflow.set_tracking_uri(uri)
        experiment = mlflow.set_experiment(EXPERIMENT)
        MlflowClient(uri).set_experiment_tag(experiment.experiment_id, "last_checked", str(time.time()))
    except Exception as exc:  # MLflow raises many types: connection, SQL, permission, ...
        raise VaeedofError(f"MLflow tracking store {uri} is unreachable or not writable "
                           f"({_first_line(exc)}); {hint}") from None


def _first_line(exc: BaseException) -> str:
    """What went wrong, short: MLflow wraps a refused or timed-out connection in a paragraph."""
    text = str(exc)
    for symptom in ("connection refused", "timed out", "name or service not known"):
        if symptom in text.lower():
            return symptom
    return (text.strip().splitlines() or [type(exc).__name__])[0][:200]


def _lost(uri: str, exc: BaseException, what: str) -> None:
    """A store that stopped answering after the check: one line, and the work goes on (its local
    outputs are what matters; a job that failed now would have them deleted by Snakemake)."""
    from .logs import get_logger

    get_logger().warning("MLflow tracking store %s stopped answering (%s): %s", uri, _first_line(exc), what)


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
    """A thin MLflow wrapper; a disabled tracker (other ranks) does nothing. A store that stops
    answering during the run disables it with one warning: training goes on, untracked."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.run_id: str | None = None
        self._pending: list = []

    def start(self, run_name: str, tags: dict, params: dict, run_id: str | None = None) -> str | None:
        if not self.enabled:
            return None
        import mlflow

        check_store()
        try:
            run = mlflow.start_run(run_id=run_id) if run_id else \
                mlflow.start_run(run_name=run_name, tags=tags)
            self.run_id = run.info.run_id
            if not run_id:
                mlflow.log_params(flatten(params))
        except Exception as exc:  # before any training: stop with one line
            raise VaeedofError(f"MLflow tracking store {tracking_uri()}: cannot start the run "
                               f"({_first_line(exc)}); fix MLFLOW_TRACKING_URI or pass --no-mlflow") from None
        return self.run_id

    def _guarded(self, action) -> None:
        try:
            action()
        except Exception as exc:  # connection, HTTP, SQL: the store, not the training, failed
            self.enabled = False
            self._pending.clear()
            _lost(tracking_uri(), exc, f"training goes on untracked and keeps its outputs "
                                       f"(MLflow run {self.run_id} is left incomplete)")

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

        def send():
            for start in range(0, len(batch), 1000):
                client.log_batch(self.run_id, metrics=batch[start:start + 1000])
            self._pending.clear()

        self._guarded(send)

    def artifact(self, path: str | os.PathLike, folder: str | None = None) -> None:
        if self.enabled:
            import mlflow

            self._guarded(lambda: mlflow.log_artifact(str(path), folder))

    def end(self, status: str = "FINISHED") -> None:
        import mlflow

        if self.enabled:
            self.flush()
        if self.enabled:
            self._guarded(lambda: mlflow.end_run(status))
        elif self.run_id and mlflow.active_run():  # the store was lost: close the run in this process
            with contextlib.suppress(Exception):
                mlflow.end_run(status)


def log_evaluation(summary: dict, params: dict, reports_dir: Path,
                   artifacts: tuple[str, ...] = ("metrics.json", "table.md", "per_image.csv")) -> str | None:
    """One MLflow run per evaluation, tagged with the training run it evaluates (the store was
    checked with `check_store` before the evaluation started); its id, or None when the store
    stopped answering since (one warning: the reports are written already and kept)."""
    try:
        return _evaluation_run(summary, params, reports_dir, artifacts)
    except Exception as exc:
        _lost(tracking_uri(), exc, f"the evaluation is not logged; its reports in {reports_dir} are kept")
        return None


def _evaluation_run(summary: dict, params: dict, reports_dir: Path, artifacts: tuple[str, ...]) -> str:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(EXPERIMENT)
    checkpoint = summary.get("checkpoint", {})
    tags = {"git_commit": summary.get("git_commit") or git_commit(), "kind": "evaluation",
            "variant": summary.get("variant", "registered"),
            "data_sha256": summary.get("data_version", {}).get("sha256", ""),
            "checkpoint_sha256": checkpoint.get("sha256", ""),
            "failed_methods": " ".join(summary.get("failed_methods", {})),  # their means: a subset
            "mlflow.parentRunId": checkpoint.get("mlflow_run_id") or ""}
    if not tags["mlflow.parentRunId"]:
        del tags["mlflow.parentRunId"]
    with mlflow.start_run(run_name=f"evaluate-{tags['variant']}", tags=tags) as run:
        mlflow.log_params(flatten({"infer": params.get("infer", {}), "vae": params["vae"]}))
        metrics = {f"{method}.{name}".replace("-", "_"): value
                   for method, scores in summary["methods"].items() for name, value in scores.items()}
        mlflow.log_metrics(metrics)
        for name in artifacts:
            if (reports_dir / name).exists():
                mlflow.log_artifact(str(reports_dir / name))
        return run.info.run_id


# ----- `vaeedof runs` -----

# Metrics worth a column by default: training loss/validation and the main fused-image scores.
DEFAULT_METRICS = ("loss", "val_psnr*", "*.PSNR", "*.SSIM")


def recent_runs(limit: int, kind: str | None, uri: str | None = None) -> list:
    from mlflow.tracking import MlflowClient

    uri = uri or tracking_uri()
    try:
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            raise VaeedofError(f"no MLflow experiment {EXPERIMENT!r} at {uri}: nothing was tracked yet")
        query = f"tags.kind = '{kind}'" if kind else ""
        return client.search_runs([experiment.experiment_id], filter_string=query,
                                  order_by=["attributes.start_time DESC"], max_results=limit)
    except VaeedofError:
        raise
    except Exception as exc:  # connection refused, HTTP error, SQL: one line naming the store
        raise VaeedofError(f"MLflow tracking store {uri} is unreachable ({_first_line(exc)})") from None


def differing_params(runs: list) -> list[str]:
    """Parameters whose value is not the same in every run (missing counts as a value)."""
    keys = sorted({key for run in runs for key in run.data.params})
    return [key for key in keys if len({run.data.params.get(key) for run in runs}) > 1]


def metric_columns(runs: list, patterns: tuple[str, ...]) -> list[str]:
    keys = sorted({key for run in runs for key in run.data.metrics})
    return [key for key in keys if any(fnmatch.fnmatchcase(key, p) for p in patterns)]


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(runs: list, patterns: tuple[str, ...] = DEFAULT_METRICS) -> str:
    """A Markdown table, newest run first."""
    params = differing_params(runs) if len(runs) > 1 else []
    metrics = metric_columns(runs, patterns)
    header = ["run", "name", "kind", "status", "started"] + params + metrics
    rows = []
    for run in runs:
        started = datetime.fromtimestamp(run.info.start_time / 1000, UTC)
        rows.append([run.info.run_id[:8], run.info.run_name, run.data.tags.get("kind", "-"),
                     run.info.status, started.strftime("%Y-%m-%d %H:%M")]
                    + [_cell(run.data.params.get(key)) for key in params]
                    + [_cell(run.data.metrics.get(key)) for key in metrics])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
