"""`vaeedof runs`: the recent MLflow runs side by side: the parameters that differ between them
and their final metrics (what `mlflow ui` shows, on a terminal)."""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime

from .errors import VaeedofError
from .tracking import EXPERIMENT, tracking_uri

# Metrics worth a column by default: training loss/validation and the main fused-image scores.
DEFAULT_METRICS = ("loss", "val_psnr*", "*.PSNR", "*.SSIM")


def recent_runs(limit: int, kind: str | None, uri: str | None = None) -> list:
    from mlflow.exceptions import MlflowException
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
    except MlflowException as exc:
        raise VaeedofError(f"MLflow tracking store {uri}: {str(exc).splitlines()[0]}") from exc


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
