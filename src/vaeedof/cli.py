"""The `vaeedof` command: one subcommand per pipeline stage. Snakemake rules and DVC stages are
thin calls of these."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import params as params_mod
from .errors import VaeedofError
from .logs import get_logger, setup_logging


def _load_params(args) -> dict:
    return params_mod.load(args.params, args.set)


def cmd_check_params(args) -> None:
    _load_params(args)
    print(f"{args.params}: ok")


def cmd_assets(args) -> None:
    from .assets import build, fetch, registry

    if args.action == "list":
        for name, asset in sorted(registry.REGISTRY.items()):
            pin = asset.sha256 or (asset.git_blob and f"git:{asset.git_blob}") or "UNPINNED"
            print(f"{name:48s} {asset.kind:5s} {pin}")
        return
    params = _load_params(args)
    if args.action == "build":
        build.build(params, args.resources)
    elif args.action == "fetch":
        for name in args.names:
            asset = registry.with_pins(registry.lookup(name), params["assets"]["pins"].get(name))
            path = fetch.resolve(asset, args.resources, params["assets"]["mirrors"])
            if asset.kind.startswith("metric:"):
                path = fetch.install_metric_weights(asset, path)
            print(path)
    elif args.action == "pin":
        for name in args.names:
            print(f"{name} sha256={fetch.pin(registry.lookup(name), args.resources)}")


def cmd_scenes(args) -> None:
    from . import scenes
    from .assets.build import load_index

    params = _load_params(args)
    written = scenes.write_scenes(params, load_index(args.assets), args.out, args.only)
    get_logger().info("wrote %d scene files under %s", len(written), args.out)


def cmd_render(args) -> None:
    from . import scenes
    from .render.renderer import render_scene

    params = _load_params(args)
    if args.scene:
        spec = _read_scene(Path(args.scene))
        scenes.check_ranges(spec, params)
        render_scene(spec, params, args.out, args.threads, args.blender_log, args.force)
        return
    # A whole split (the DVC stage): every scene of the split, skipping those already current.
    log = get_logger()
    ids = scenes.scene_ids(args.split, params["scenes"][args.split])
    for position, scene_id in enumerate(ids, 1):
        spec = _read_scene(scenes.scene_path(args.scenes_dir, args.split, scene_id))
        scenes.check_ranges(spec, params)
        render_scene(spec, params, Path(args.out) / scene_id, args.threads, args.blender_log,
                     args.force)
        log.info("render %s: %d/%d scenes", args.split, position, len(ids))
    _remove_stale(Path(args.out), set(ids))


def _remove_stale(out: Path, keep: set[str]) -> None:
    import shutil

    if out.is_dir():
        for child in out.iterdir():
            if child.is_dir() and not child.name.startswith(".") and child.name not in keep:
                get_logger().info("removing %s (no longer in the scene list)", child)
                shutil.rmtree(child)


def _read_scene(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise VaeedofError(f"{path}: scene file not found (run `vaeedof scenes`)") from None
    except json.JSONDecodeError as exc:
        raise VaeedofError(f"{path}: not valid JSON ({exc})") from None


def cmd_contact_sheet(args) -> None:
    from . import contact_sheet

    params = _load_params(args)
    count = params["render"]["contact_sheet_scenes"]
    from .dataset import rendered_scenes

    dirs = rendered_scenes(args.data)[:count]
    contact_sheet.write(dirs, args.out)


def cmd_patches(args) -> None:
    from . import patches

    patches.extract(_load_params(args), args.data, args.out)


def cmd_latents(args) -> None:
    import torch

    from . import latents
    from .vae import load_from_params

    params = _load_params(args)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # encoding is the whole cost: GPU when there
    latents.build(load_from_params(params, args.resources).to(device), args.patches, args.out)


def cmd_train(args) -> None:
    from .launch import relaunch, resolve_nproc
    from .train import train
    from .vae import load_from_params

    params = _load_params(args)  # checked before spawning processes
    if args.nproc:
        relaunch(args.argv, resolve_nproc(args.nproc))
    train(params, args.latents, args.patches, args.out,
          vae_loader=lambda: load_from_params(params, args.resources), device=args.device,
          track=not args.no_mlflow, stop_at=args.stop_at)


def cmd_runs(args) -> None:
    from .runs import DEFAULT_METRICS, recent_runs, table

    runs = recent_runs(args.limit, args.kind, args.tracking_uri)
    if not runs:
        raise VaeedofError("no MLflow runs" + (f" of kind {args.kind!r}" if args.kind else ""))
    print(table(runs, tuple(args.metric) or DEFAULT_METRICS))


def cmd_vae_check(args) -> None:
    """The paper's deployment safeguard: how well the VAE reconstructs each input."""
    import torch

    from .images import read_image
    from .vae import load_from_params, psnr

    params = _load_params(args)
    vae = load_from_params(params, args.resources)
    worst = float("inf")
    for path in args.images:
        image = read_image(path)
        with torch.no_grad():
            value = psnr(vae.reconstruct(image[None]), image[None])
        worst = min(worst, value)
        flag = "  LOW: fusion quality will be limited here" if value < args.warn_below else ""
        print(f"{path}\t{value:.2f} dB{flag}")
    if worst < args.warn_below:
        get_logger().warning("some inputs reconstruct below %.1f dB through %s", args.warn_below,
                             params["vae"]["name"])


def cmd_fuse(args) -> None:
    from .fusion import expand_inputs, fuse_files

    inputs = expand_inputs(args.images)
    params = params_mod.load(args.params) if Path(args.params).exists() else None
    mirrors = params["assets"]["mirrors"] if params else []
    mode = args.mode or (params["fusion"]["output"] if params else "latent")
    fuse_files(inputs, args.output, args.checkpoint, args.device, args.tile, args.resources, mirrors,
               None if args.no_vae_check else args.vae_check_db, mode,
               strict_mode=args.mode is not None)  # a mode from params falls back to latent


def cmd_infer(args) -> None:
    from .evaluate import infer
    from .infer import load_fuser

    params = _load_params(args)
    fuser = load_fuser(args.checkpoint, args.device, params["infer"]["tile"], args.resources,
                       params["assets"]["mirrors"])
    infer(args.data, args.out, fuser)


def cmd_evaluate(args) -> None:
    from . import analysis
    from .evaluate import checkpoint_info, evaluate
    from .tracking import check_store, log_evaluation

    params = _load_params(args)
    cfg, reports = params["evaluate"], Path(args.reports)
    if not args.no_mlflow:
        check_store()
    info = checkpoint_info(args.checkpoint)
    summary = evaluate(args.data, args.fused, reports, info)
    rows = analysis.difficulty_table(args.data, args.fused, cfg["difficulty_patch"], cfg["difficulty_bins"])
    analysis.write_csv(rows, reports / "difficulty.csv")
    analysis.plot(rows, "difficulty", "psnr", reports / "difficulty.png",
                  "PSNR per difficulty bin (point size: patches)", size_key="patches",
                  xlabel="difficulty: 100 - PSNR of the best input patch (dB)", ylabel="PSNR (dB)")
    analysis.methods_sheet(args.data, args.fused, reports / "contact_sheet_methods.png",
                           cfg["contact_sheet_scenes"])
    if not args.no_mlflow:
        log_evaluation(summary, params, reports)
    print((reports / "table.md").read_text())


def cmd_real_sheet(args) -> None:
    from . import analysis
    from .infer import load_fuser

    params = _load_params(args)
    cfg = params["evaluate"]
    folders = args.stacks or cfg["real_stacks"]
    stacks = analysis.find_stacks(folders, cfg["real_stacks_max"])
    fuser = load_fuser(args.checkpoint, args.device, params["infer"]["tile"], args.resources,
                       params["assets"]["mirrors"])
    analysis.real_stacks_sheet(stacks, fuser, Path(args.out))


def cmd_throughput(args) -> None:
    from . import analysis
    from .infer import load_fuser

    params = _load_params(args)
    cfg, reports = params["evaluate"], Path(args.reports)
    fuser = load_fuser(args.checkpoint, args.device, params["infer"]["tile"], args.resources,
                       params["assets"]["mirrors"])
    rows = analysis.throughput_table(fuser, cfg["throughput_size"], range(2, 8), cfg["throughput_repeats"])
    analysis.write_csv(rows, reports / "throughput.csv")
    analysis.plot(rows, "inputs", "images_per_s", reports / "throughput.png",
                  f"Fused {cfg['throughput_size']} px images per second ({fuser.device})", log_y=True,
                  xlabel="number of inputs", ylabel="fused images per second")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    """Where the trained model and the VAE weights come from, and where it runs."""
    p.add_argument("--checkpoint", default="models/fusion_ema.safetensors")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--resources", default="resources")


def _add_tracking_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow (the store is "
                   "otherwise checked before any work and a failure stops the command)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaeedof", description=__doc__)
    # Snakemake sets VAEEDOF_PARAMS to the effective parameters (--configfile/--config applied).
    parser.add_argument("--params", default=params_mod.default_params_path(),
                        help="parameter file (default: $VAEEDOF_PARAMS, else params.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. --set render.samples=32")
    parser.add_argument("--log", help="also write the log to this file")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check-params", help="validate the parameter file")
    p.set_defaults(func=cmd_check_params)

    p = sub.add_parser("assets", help="build the asset index; list, fetch or pin remote assets")
    p.add_argument("action", choices=["build", "list", "fetch", "pin"])
    p.add_argument("names", nargs="*", help="registered asset names (fetch, pin)")
    p.add_argument("--resources", default="resources")
    p.set_defaults(func=cmd_assets)

    p = sub.add_parser("scenes", help="sample every scene's parameters (Algorithm 1)")
    p.add_argument("--assets", default="resources/assets/index.json")
    p.add_argument("--out", default="data/scenes")
    p.add_argument("--only", nargs="+", metavar="SCENE_ID", help="sample only these scenes")
    p.set_defaults(func=cmd_scenes)

    p = sub.add_parser("render", help="render a scene (or a whole split) with Blender")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--scene", help="one scene JSON file")
    target.add_argument("--split", choices=["train", "test"], help="every scene of a split")
    p.add_argument("--scenes-dir", default="data/scenes")
    p.add_argument("--out", required=True, help="scene directory (--scene) or split directory")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--blender-log", help="file for Blender's console output")
    p.add_argument("--force", action="store_true", help="render even if up to date")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("contact-sheet", help="a PNG of a split's first scenes, for people")
    p.add_argument("--data", required=True, help="rendered split directory")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_contact_sheet)

    p = sub.add_parser("patches", help="training patches from the rendered train split")
    p.add_argument("--data", default="data/mattingmfif/train")
    p.add_argument("--out", default="data/patches")
    p.set_defaults(func=cmd_patches)

    p = sub.add_parser("latents", help="encode every patch once with the frozen VAE")
    p.add_argument("--patches", default="data/patches")
    p.add_argument("--out", default="data/latents")
    p.add_argument("--resources", default="resources")
    p.set_defaults(func=cmd_latents)

    p = sub.add_parser("train", help="train the Fusion U-Net (run under torchrun for DDP)")
    p.add_argument("--latents", default="data/latents")
    p.add_argument("--patches", default="data/patches")
    p.add_argument("--out", default="models")
    p.add_argument("--resources", default="resources")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    _add_tracking_arg(p)
    p.add_argument("--stop-at", type=int, help="stop after this step (a checkpoint is kept)")
    p.add_argument("--nproc", help="processes on this node: a number or 'auto' (GPUs, else 2 on "
                   "CPU); re-executes under torchrun. Leave out when torchrun already started it")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("fuse", help="fuse a focus stack into one all-in-focus image")
    p.add_argument("images", nargs="+", help="image files, folders or glob patterns, in focus order")
    p.add_argument("-o", "--output", required=True, help="output .png, .jpg or .tif")
    _add_model_args(p)
    p.add_argument("--tile", type=int, default=512, help="tile side in pixels (multiple of 64)")
    p.add_argument("--vae-check-db", type=float, default=27.0,
                   help="warn about inputs the VAE reconstructs below this PSNR")
    p.add_argument("--no-vae-check", action="store_true", help="skip the reconstruction check")
    p.add_argument("--mode", choices=["latent", "hybrid"],
                   help="output: latent (every pixel decoded, the paper) or hybrid (exact in-focus "
                   "input pixels, decoded fusion elsewhere); default: fusion.output in params")
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("infer", help="fuse every test scene with the model and the baselines")
    p.add_argument("--data", default="data/mattingmfif/test")
    p.add_argument("--out", default="data/fused")
    _add_model_args(p)
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("evaluate", help="score the fused test scenes against the ground truth")
    p.add_argument("--data", default="data/mattingmfif/test")
    p.add_argument("--fused", default="data/fused")
    p.add_argument("--reports", default="reports")
    p.add_argument("--checkpoint", default="models/fusion_ema.safetensors")
    _add_tracking_arg(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("real-sheet", help="contact sheet of real focus stacks: inputs | methods")
    p.add_argument("stacks", nargs="*", help="stack folders (default: evaluate.real_stacks)")
    p.add_argument("--out", default="reports/contact_sheet_real.png")
    _add_model_args(p)
    p.set_defaults(func=cmd_real_sheet)

    p = sub.add_parser("throughput", help="fused images per second versus number of inputs")
    p.add_argument("--reports", default="reports")
    _add_model_args(p)
    p.set_defaults(func=cmd_throughput)

    p = sub.add_parser("runs", help="compare recent MLflow runs: differing params, final metrics")
    p.add_argument("-n", "--limit", type=int, default=10, help="newest N runs (default 10)")
    p.add_argument("--kind", choices=["train", "evaluation"], help="only this kind of run")
    p.add_argument("--metric", action="append", default=[], metavar="PATTERN",
                   help="metric columns (glob, repeatable; default: loss, val_psnr*, *.PSNR, *.SSIM)")
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else "
                   "sqlite:///<cwd>/mlflow.db)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("vae-check", help="print each image's VAE reconstruction PSNR")
    p.add_argument("images", nargs="+")
    p.add_argument("--resources", default="resources")
    p.add_argument("--warn-below", type=float, default=27.0, help="warn under this PSNR (dB)")
    p.set_defaults(func=cmd_vae_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging(args.log, args.verbose)
    try:
        args.func(args)
    except VaeedofError as exc:
        get_logger().debug("error", exc_info=True)
        print(f"vaeedof: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permissions, vanished files: name the file, one line
        get_logger().debug("error", exc_info=True)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"vaeedof: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
