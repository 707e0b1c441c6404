"""The evaluation's and the release's `vaeedof` commands: parsing and dispatch only (the work
is in the modules they call)."""

from __future__ import annotations

from pathlib import Path

from .. import atomic
from .. import params as params_mod
from ..errors import VaeedofError
from ..fusion.options import ALIGN_MODES
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
    infer(args.data, args.out, _fuser(args, params_mod.from_args(args)), args.align)


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
    real_stacks_sheet(stacks, _fuser(args, params), Path(args.out))


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
    from ..training.release import export_release

    out = Path(args.out) if args.out else release_weights().parent
    path = export_release(Path(args.weights), Path(args.reports), params_mod.from_args(args), out)
    get_logger().info("release model written: %s (model card beside it)", path)


def cmd_throughput(args) -> None:
    from ..evaluation.figures import write_throughput

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


def add_commands(sub, add_model_args, add_tracking_arg) -> None:
    p = sub.add_parser("infer", help="fuse every test scene with the model and the baselines")
    p.add_argument("--data", default="data/mattingmfif/test")
    p.add_argument("--out", default="data/fused")
    p.add_argument("--align", default="off", choices=ALIGN_MODES,
                   help="align each stack first (every method gets the aligned frames)")
    add_model_args(p)
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("evaluate", help="score the fused test scenes against the ground truth")
    p.add_argument("--data", default="data/mattingmfif/test")
    p.add_argument("--fused", default="data/fused")
    p.add_argument("--reports", default="reports")
    p.add_argument("--checkpoint", default="models/fusion_ema.safetensors")
    p.add_argument("--variant", default="registered", choices=["registered", "handheld"],
                   help="which test stacks these are (a tag in the reports and MLflow)")
    add_tracking_arg(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("handheld", help="a hand-held copy of the test split (seeded warps)")
    p.add_argument("--data", default="data/mattingmfif/test")
    p.add_argument("--out", default="data/handheld/test")
    p.set_defaults(func=cmd_handheld)

    p = sub.add_parser("real-sheet", help="contact sheet of real focus stacks: inputs | methods")
    p.add_argument("stacks", nargs="*", help="stack folders (default: evaluate.real_stacks)")
    p.add_argument("--out", default="reports/contact_sheet_real.png")
    add_model_args(p)
    p.set_defaults(func=cmd_real_sheet)

    p = sub.add_parser("real-metrics", help="no-reference scores (Q^AB/F, Q_Y, NMI) of the model "
                       "and the baselines on real stacks without ground truth")
    p.add_argument("stacks", nargs="*", help="stack folders (default: evaluate.real_stacks)")
    p.add_argument("--reports", default="reports")
    add_tracking_arg(p)
    add_model_args(p)
    p.set_defaults(func=cmd_real_metrics)

    p = sub.add_parser("release", help="make a trained model the release model (fp16 weights and "
                       "a model card inside the package)")
    p.add_argument("--weights", default="models/fusion_ema.safetensors")
    p.add_argument("--reports", default="reports", help="its evaluation on the test split")
    p.add_argument("--out", help="default: the installed package's release folder")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("throughput", help="fused images per second versus number of inputs")
    p.add_argument("--reports", default="reports")
    add_model_args(p)
    p.set_defaults(func=cmd_throughput)

    p = sub.add_parser("runs", help="compare recent MLflow runs: differing params, final metrics")
    p.add_argument("-n", "--limit", type=int, default=10, help="newest N runs (default 10)")
    p.add_argument("--kind", choices=["train", "evaluation"], help="only this kind of run")
    p.add_argument("--metric", action="append", default=[], metavar="PATTERN",
                   help="metric columns (glob, repeatable; default: loss, val_psnr*, *.PSNR, *.SSIM)")
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else "
                   "sqlite:///<cwd>/mlflow.db)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("readme", help="regenerate the figures of the README (or of docs/*.md) from the "
                       "committed tables of results/")
    p.add_argument("documents", nargs="*", default=["README.md"], metavar="DOCUMENT")
    p.add_argument("--results", default="results")
    p.add_argument("--collect", action="store_true", help="first write results/ from reports/ and "
                   "benchmarks/ (after the pipeline or a study's script)")
    p.add_argument("--reports", default="reports")
    p.add_argument("--benchmarks", default="benchmarks")
    p.add_argument("--check", action="store_true", help="change nothing; fail when a figure is stale")
    p.set_defaults(func=cmd_readme)
