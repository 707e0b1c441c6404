"""The evaluation's and the release's `vaeedof` commands: parsing and dispatch only (the work
is in the modules they call)."""

from __future__ import annotations

from pathlib import Path

from .. import atomic
from .. import params as params_mod
from ..errors import VaeedofError
from ..logs import get_logger


def cmd_runs(args) -> None:
    from ..tracking import DEFAULT_METRICS, recent_runs, table

    runs = recent_runs(args.limit, args.kind, args.tracking_uri)
    if not runs:
        raise VaeedofError("no MLflow runs" + (f" of kind {args.kind!r}" if args.kind else ""))
    print(table(runs, tuple(args.metric) or DEFAULT_METRICS))


def _fuser(args, params: dict):
    from ..fusion.loader import load_fuser

    return load_fuser(args.checkpoint, args.device, params["infer"]["tile"], args.resources,
                      params["assets"]["mirrors"], hybrid=params_mod.given(args.set).get("fusion"))


def cmd_infer(args) -> None:
    from ..evaluation.infer import STAGE, infer

    atomic.check_replaceable(Path(args.out), STAGE, [args.data])  # before the model loads
    params = params_mod.from_args(args)
    infer(args.data, args.out, _fuser(args, params), args.align, params["evaluate"])


def cmd_evaluate(args) -> None:
    from ..evaluation.evaluate import run

    run(params_mod.from_args(args), args.data, args.fused, args.reports, args.checkpoint, not args.no_mlflow,
        args.variant)
    print((Path(args.reports) / "table.md").read_text())


def cmd_handheld(args) -> None:
    from ..evaluation.handheld import make_split

    make_split(args.data, args.out, params_mod.from_args(args))


def cmd_real_sheet(args) -> None:
    from ..evaluation.real import real_stacks_sheet
    from ..fusion.files import find_stacks

    params = params_mod.load_or_defaults(args.params, args.set)  # real stacks: a project is not needed
    cfg = params["evaluate"]
    stacks = find_stacks(args.stacks or cfg["real_stacks"], cfg["real_stacks_max"])
    real_stacks_sheet(stacks, _fuser(args, params), Path(args.out), evaluate=cfg)


def cmd_real_metrics(args) -> None:
    from ..evaluation import real_metrics
    from ..fusion.files import find_stacks

    params = params_mod.load_or_defaults(args.params, args.set)  # real stacks: a project is not needed
    stacks = find_stacks(args.stacks or params["evaluate"]["real_stacks"])
    fuser = _fuser(args, params)
    real_metrics.run(stacks, fuser, args.reports, fuser.checkpoint, params,
                     not args.no_mlflow)


def cmd_release(args) -> None:
    from ..fusion.loader import release_weights
    from .release import export_release

    out = Path(args.out) if args.out else release_weights().parent
    path = export_release(Path(args.weights), Path(args.reports), params_mod.from_args(args), out)
    get_logger().info("release model written: %s (model card beside it)", path)


def cmd_throughput(args) -> None:
    from .throughput import write_throughput

    params = params_mod.from_args(args)
    write_throughput(_fuser(args, params), Path(args.reports), params["evaluate"])


def cmd_readme(args) -> None:
    from ..evaluation.readme import collect, update

    if args.collect:
        collected, missing = collect(Path(args.reports), Path(args.benchmarks), Path(args.results))
        print(f"{args.results}: collected {', '.join(collected) or 'nothing'}"
              + (f"; no reports for {', '.join(missing)} (kept as recorded)" if missing else ""))
    for document in args.documents:
        changed = update(document, args.results, args.check)
        print(f"{document}: " + (f"regenerated {', '.join(changed)}" if changed else "figures up to date"))
