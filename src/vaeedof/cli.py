"""The `vaeedof` command: one subcommand per pipeline stage. Snakemake rules and DVC stages are
thin calls of these."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import atomic
from . import params as params_mod
from .arguments import Parser, finite_number, positive_int, tile_side
from .assets.fetch import default_resources_dir
from .devices import CHOICES as DEVICE_CHOICES
from .errors import VaeedofError
from .evaluation import commands as evaluation_commands
from .fusion.options import (
    ALIGN_MODES,
    EVIDENT_MOTION_PX,
    MIN_GAIN,
    MOTION_MODELS,
    OUTPUT_MODES,
    PRECISIONS,
    QUALITIES,
    VIEW_SIDE,
    WHOLE_SIDE,
)
from .logs import get_logger, setup_logging

# Inputs the frozen VAE reconstructs below this PSNR (dB) are named (the paper's safeguard).
VAE_CHECK_DB = 27.0


def cmd_check_params(args) -> None:
    params_mod.from_args(args)
    print(f"{args.params}: ok")


def cmd_dvc_yaml(args) -> None:
    from .stages import write_dvc_yaml

    stale = write_dvc_yaml(args.out, args.check)
    if stale and args.check:
        raise VaeedofError(f"{args.out}: differs from the stage table (src/vaeedof/stages.py); "
                           "regenerate it: vaeedof dvc-yaml")
    print(f"{args.out}: " + ("written" if stale else "current"))


def cmd_configure(args) -> None:
    if args.refresh:
        if args.overlays or args.set:
            raise VaeedofError("configure --refresh: merges the sources the file names; give no overlays "
                               "or --set with it")
        params_mod.refresh_merged(args.out, args.params)
    else:
        params_mod.write_merged(args.out, args.params, args.overlays, args.set)
    sources = params_mod.recorded_sources(args.out)
    print(f"{args.out}: written from " + " + ".join([sources["base"], *sources["overlays"]]))


def cmd_dvc_commit(args) -> None:
    from .stages import commit_to_dvc

    # What DVC compares: the merged file, merged again from its sources (written when missing).
    commit_to_dvc(params_mod.from_args(args), params_mod.refresh_merged())


def cmd_assets(args) -> None:
    from .assets.commands import run

    params = None if args.action == "list" else params_mod.from_args(args)
    run(args.action, args.names, params, args.resources)


def cmd_scenes(args) -> None:
    from . import scenes
    from .assets.build import load_index

    params = params_mod.from_args(args)
    written = scenes.write_scenes(params, load_index(args.assets), args.out, args.only)
    get_logger().info("wrote %d scene files under %s", len(written), args.out)


def cmd_render(args) -> None:
    from . import scenes

    params = params_mod.from_args(args)
    if args.split:  # a whole split (the DVC stage), skipping scenes already current
        from .render.split import render_split

        render_split(params, args.split, args.scenes_dir, args.out, args.threads, args.blender_log,
                     args.force)
        return
    from .render.renderer import render_scene

    spec = scenes.read_scene(args.scene)
    scenes.check_ranges(spec, params)
    render_scene(spec, params, args.out, args.threads, args.blender_log, args.force)


def cmd_contact_sheet(args) -> None:
    from .render import contact_sheet, layout

    count = params_mod.from_args(args)["render"]["contact_sheet_scenes"]
    contact_sheet.write(layout.rendered_scenes(args.data)[:count], args.out)


def cmd_patches(args) -> None:
    from .training import patches

    atomic.check_replaceable(Path(args.out), patches.STAGE, [args.data])
    patches.extract(params_mod.from_args(args), args.data, args.out)


def cmd_latents(args) -> None:
    from .devices import resolve_device
    from .nets.vae import load_from_params
    from .training import latents

    atomic.check_replaceable(Path(args.out), latents.STAGE, [args.patches])  # before the VAE loads
    params = params_mod.from_args(args)
    vae = load_from_params(params, args.resources).to(resolve_device(args.device))
    latents.build(vae, args.patches, args.out)


def cmd_train(args) -> None:
    from .nets.vae import load_from_params
    from .training.launch import relaunch, resolve_nproc
    from .training.train import train

    params = params_mod.from_args(args)  # checked before spawning processes
    if args.nproc:
        relaunch(args.argv, resolve_nproc(args.nproc))
    train(params, args.latents, args.patches, args.out,
          vae_loader=lambda: load_from_params(params, args.resources), device=args.device,
          track=not args.no_mlflow, stop_at=args.stop_at)


def cmd_vae_check(args) -> None:
    """The paper's deployment safeguard: how well the VAE the model fuses through reconstructs
    each input."""
    from .devices import resolve_device
    from .fusion.loader import checkpoint_vae, read_checkpoint
    from .fusion.vae_check import check_inputs
    from .images import read_image

    device = resolve_device(args.device)
    params = params_mod.load_or_defaults(args.params, args.set)
    weights, _, info = read_checkpoint(args.checkpoint)
    vae = checkpoint_vae(weights, info, args.resources, params["assets"]["mirrors"]).to(device)
    scores = check_inputs(vae, [(path, read_image(path)) for path in args.images], args.warn_below)
    for path, value in zip(args.images, scores, strict=True):
        flag = "  LOW: fusion quality will be limited here" if value < args.warn_below else ""
        print(f"{path}\t{value:.2f} dB{flag}")


def cmd_fuse(args) -> None:
    from .devices import resolve_device
    from .fusion import files
    from .fusion.loader import load_fuser

    resolve_device(args.device)  # before any input is read
    params = params_mod.load_or_defaults(args.params, args.set)

    def open_fuser():
        mode = args.mode or params["fusion"]["output"]  # a mode from params falls back to latent
        return load_fuser(args.checkpoint, args.device, args.tile or params["infer"]["tile"],
                          args.resources, params["assets"]["mirrors"], mode,
                          strict_mode=args.mode is not None, precision=args.precision,
                          hybrid=params_mod.given(args.set).get("fusion"), quality=args.quality)

    files.fuse_items(args.images, args.output, open_fuser, f".{args.format}", align=args.align,
                     motion=args.motion, vae_check_db=None if args.no_vae_check else args.vae_check_db,
                     depth_map=args.depth_map, depth_confidence=args.depth_confidence)


def cmd_align(args) -> None:
    from .fusion.files import expand_inputs, load_stack, write_aligned

    paths = expand_inputs(args.images)
    if len(paths) < 2:
        raise VaeedofError(f"{paths[0]}: one frame; aligning needs two or more")
    written = write_aligned(load_stack(paths), args.output, args.motion)
    get_logger().info("aligned %d frames into %s (transforms.json beside them)", len(written), args.output)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    """Where the trained model and the VAE weights come from, and where it runs."""
    p.add_argument("--checkpoint", help="exported weights (default: models/fusion_ema.safetensors "
                   "when this folder has one, else the release model)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--resources", default=default_resources_dir(),
                   help="verified downloads (default: resources/ in a project, else the user cache)")


def _add_tracking_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow (the store is "
                   "otherwise checked before any work and a failure stops the command)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vaeedof", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="parameter file (Snakemake's jobs name "
                        f"the effective one, DVC's stages {params_mod.MERGED}: params.yaml with a scale's "
                        "overlay)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. --set render.samples=32")
    parser.add_argument("--log", help="also write the log to this file")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_dataset_commands(sub)
    _add_training_commands(sub)
    _add_fusion_commands(sub)
    _add_evaluation_commands(sub)
    return parser


def _add_dataset_commands(sub) -> None:
    p = sub.add_parser("check-params", help="validate the parameter file")
    p.set_defaults(func=cmd_check_params)

    p = sub.add_parser("configure", help=f"write {params_mod.MERGED}, the parameters DVC's stages read: "
                       "--params (params.yaml) with each overlay over it, in order")
    p.add_argument("overlays", nargs="*", metavar="OVERLAY", help="a file of the keys that differ "
                   "(config/ci.yaml, config/paper.yaml, config/release.yaml)")
    p.add_argument("--refresh", action="store_true", help="merge again the sources the file names "
                   "(DVC's first stage runs this)")
    p.add_argument("--out", default=params_mod.MERGED)
    p.set_defaults(func=cmd_configure)

    p = sub.add_parser("dvc-yaml", help="write dvc.yaml from the stage table (src/vaeedof/stages.py)")
    p.add_argument("--out", default="dvc.yaml")
    p.add_argument("--check", action="store_true", help="change nothing; fail when the file is stale")
    p.set_defaults(func=cmd_dvc_yaml)

    p = sub.add_parser("dvc-commit", help="record in dvc.lock the stages whose outputs exist and were made "
                       f"with the values of {params_mod.MERGED} (Snakemake runs it after a complete run)")
    p.set_defaults(func=cmd_dvc_commit)

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
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--blender-log", help="file for Blender's console output")
    p.add_argument("--force", action="store_true", help="render even if up to date")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("contact-sheet", help="a PNG of a split's first scenes, for people")
    p.add_argument("--data", required=True, help="rendered split directory")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_contact_sheet)


def _add_training_commands(sub) -> None:
    p = sub.add_parser("patches", help="training patches from the rendered train split")
    p.add_argument("--data", default="data/mattingmfif/train")
    p.add_argument("--out", default="data/patches")
    p.set_defaults(func=cmd_patches)

    p = sub.add_parser("latents", help="encode every patch once with the frozen VAE")
    p.add_argument("--patches", default="data/patches")
    p.add_argument("--out", default="data/latents")
    p.add_argument("--resources", default="resources")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.set_defaults(func=cmd_latents)

    p = sub.add_parser("train", help="train the Fusion U-Net (run under torchrun for DDP)")
    p.add_argument("--latents", default="data/latents")
    p.add_argument("--patches", default="data/patches")
    p.add_argument("--out", default="models")
    p.add_argument("--resources", default="resources")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    _add_tracking_arg(p)
    p.add_argument("--stop-at", type=positive_int, help="stop after this step (a checkpoint is kept)")
    p.add_argument("--nproc", help="processes on this node: a number or 'auto' (GPUs, else 2 on "
                   "CPU); re-executes under torchrun. Leave out when torchrun already started it")
    p.set_defaults(func=cmd_train)


def _add_fusion_commands(sub) -> None:
    p = sub.add_parser("fuse", help="fuse a focus stack into one all-in-focus image")
    p.add_argument("images", nargs="+", help="image files, folders or glob patterns, in focus order; "
                   "or one folder of stack folders (one output each, in the --output folder)")
    p.add_argument("-o", "--output", required=True, help="output .png, .jpg or .tif (a folder for a "
                   "folder of stacks)")
    p.add_argument("--format", default="png", choices=["png", "jpg", "tif"],
                   help="output format for a folder of stacks")
    p.add_argument("--align", default="auto", choices=ALIGN_MODES,
                   help=f"register hand-held frames first; auto: only on motion of {EVIDENT_MOTION_PX:g} px "
                   "or more seen in detail sharp in both neighbouring frames (defocus can fake any other), "
                   f"and match a frame's exposure when it differs by {MIN_GAIN * 100:g}%% or more; "
                   "on: always register")
    p.add_argument("--motion", default="similarity", choices=MOTION_MODELS,
                   help="alignment motion model (similarity: shift, rotation, focus breathing)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto: fp32 on the CPU, bf16/fp16 on a GPU; bf16: 2x faster on CPUs with "
                   "AVX512-BF16, VAE round trip about 0.1 dB lower")
    p.add_argument("--depth-map", metavar="PATH", help="also write which frame each pixel took (the one "
                   "with the largest weight): a 16-bit grey PNG or TIFF, frame k of n as k / (n - 1) x "
                   "65535, 0 the first frame as given (hybrid output; one stack)")
    p.add_argument("--depth-confidence", metavar="PATH", help="with --depth-map: how decided each pixel's "
                   "frame was (16-bit grey, 65535: one frame took all the weight at every level)")
    p.add_argument("--quality", default="fast", choices=QUALITIES,
                   help=f"fast: frames over {WHOLE_SIDE} px square are decided on views shrunk to "
                   f"{VIEW_SIDE} px square or less, stacks of more frames than the model takes are merged "
                   "by focus first (hybrid output: every pixel still an input pixel at full resolution); "
                   "max: the network sees every pixel of every frame (several times slower there)")
    _add_model_args(p)
    p.add_argument("--tile", type=tile_side, help="tile side in pixels, a multiple of 64 (default: "
                   "infer.tile in params)")
    p.add_argument("--vae-check-db", type=finite_number, default=VAE_CHECK_DB,
                   help="warn about inputs the VAE reconstructs below this PSNR")
    p.add_argument("--no-vae-check", action="store_true", help="skip the reconstruction check")
    p.add_argument("--mode", choices=OUTPUT_MODES,
                   help="output: latent (every pixel decoded, the paper) or hybrid (every pixel a mix "
                   "of exact input pixels); default: fusion.output in params")
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("align", help="register the frames of a hand-held focus stack")
    p.add_argument("images", nargs="+", help="image files, a folder or glob patterns, in focus order")
    p.add_argument("-o", "--output", required=True, help="folder for the aligned frames (PNG) and "
                   "transforms.json")
    p.add_argument("--motion", default="similarity", choices=MOTION_MODELS)
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("vae-check", help="print each image's reconstruction PSNR through the VAE the "
                       "model fuses through")
    p.add_argument("images", nargs="+")
    _add_model_args(p)
    p.add_argument("--warn-below", type=finite_number, default=VAE_CHECK_DB, help="warn under this PSNR (dB)")
    p.set_defaults(func=cmd_vae_check)


# Arguments that name what a command reads or writes: `--log` must not append to any of them.
PATH_ARGS = ("images", "data", "scene", "scenes_dir", "patches", "latents", "params", "checkpoint", "assets",
             "stacks", "fused", "weights", "output", "out")


# How image files start (PNG, JPEG, TIFF both byte orders, BMP, WebP's RIFF container).
IMAGE_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"RIFF")


def _add_evaluation_commands(sub) -> None:
    p = sub.add_parser("infer", help="fuse every test scene with the model and the baselines")
    p.add_argument("--data", default="data/mattingmfif/test")
    p.add_argument("--out", default="data/fused")
    p.add_argument("--align", default="off", choices=ALIGN_MODES,
                   help="align each stack first (every method gets the aligned frames)")
    _add_model_args(p)
    p.set_defaults(func=evaluation_commands.cmd_infer)

    p = sub.add_parser("evaluate", help="score the fused test scenes against the ground truth")
    p.add_argument("--data", default="data/mattingmfif/test")
    p.add_argument("--fused", default="data/fused")
    p.add_argument("--reports", default="reports")
    p.add_argument("--checkpoint", default="models/fusion_ema.safetensors")
    p.add_argument("--variant", default="registered", choices=["registered", "handheld"],
                   help="which test stacks these are (a tag in the reports and MLflow)")
    _add_tracking_arg(p)
    p.set_defaults(func=evaluation_commands.cmd_evaluate)

    p = sub.add_parser("handheld", help="a hand-held copy of the test split (seeded warps)")
    p.add_argument("--data", default="data/mattingmfif/test")
    p.add_argument("--out", default="data/handheld/test")
    p.set_defaults(func=evaluation_commands.cmd_handheld)

    p = sub.add_parser("real-sheet", help="contact sheet of real focus stacks: inputs | methods")
    p.add_argument("stacks", nargs="*", help="stack folders (default: evaluate.real_stacks)")
    p.add_argument("--out", default="reports/contact_sheet_real.png")
    _add_model_args(p)
    p.set_defaults(func=evaluation_commands.cmd_real_sheet)

    p = sub.add_parser("real-metrics", help="no-reference scores (Q^AB/F, Q_Y, NMI) of the model "
                       "and the baselines on real stacks without ground truth")
    p.add_argument("stacks", nargs="*", help="stack folders (default: evaluate.real_stacks)")
    p.add_argument("--reports", default="reports")
    _add_tracking_arg(p)
    _add_model_args(p)
    p.set_defaults(func=evaluation_commands.cmd_real_metrics)

    p = sub.add_parser("release", help="make a trained model the release model (fp16 weights and "
                       "a model card inside the package)")
    p.add_argument("--weights", default="models/fusion_ema.safetensors")
    p.add_argument("--reports", default="reports", help="its evaluation on the test split")
    p.add_argument("--out", help="default: the installed package's release folder")
    p.set_defaults(func=evaluation_commands.cmd_release)

    p = sub.add_parser("throughput", help="fused images per second versus number of inputs")
    p.add_argument("--reports", default="reports")
    _add_model_args(p)
    p.set_defaults(func=evaluation_commands.cmd_throughput)

    p = sub.add_parser("runs", help="compare recent MLflow runs: differing params, final metrics")
    p.add_argument("-n", "--limit", type=int, default=10, help="newest N runs (default 10)")
    p.add_argument("--kind", choices=["train", "evaluation"], help="only this kind of run")
    p.add_argument("--metric", action="append", default=[], metavar="PATTERN",
                   help="metric columns (glob, repeatable; default: loss, val_psnr*, *.PSNR, *.SSIM)")
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else "
                   "sqlite:///<cwd>/mlflow.db)")
    p.set_defaults(func=evaluation_commands.cmd_runs)

    p = sub.add_parser("readme", help="regenerate the figures of the README (or of docs/*.md) from the "
                       "committed tables of results/")
    p.add_argument("documents", nargs="*", default=["README.md"], metavar="DOCUMENT")
    p.add_argument("--results", default="results")
    p.add_argument("--collect", action="store_true", help="first write results/ from reports/ and "
                   "benchmarks/ (after the pipeline or a study's script)")
    p.add_argument("--reports", default="reports")
    p.add_argument("--benchmarks", default="benchmarks")
    p.add_argument("--check", action="store_true", help="change nothing; fail when a figure is stale")
    p.set_defaults(func=evaluation_commands.cmd_readme)


def _check_log_path(args) -> None:
    """Refuse a log file that is an input, lies inside an input folder, or is an image (by its
    name, or by its first bytes when it exists)."""
    from .images import READ_SUFFIXES

    if not args.log:
        return
    log = Path(args.log).resolve()
    if log.suffix.lower() in READ_SUFFIXES:
        raise VaeedofError(f"--log {args.log}: is an image file name; the log goes to a text file")
    if log.is_file():
        with open(log, "rb") as handle:
            if handle.read(4).startswith(IMAGE_SIGNATURES):
                raise VaeedofError(f"--log {args.log}: is an image; the log goes to a text file")
    for name in PATH_ARGS:
        value = getattr(args, name, None)
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            source = Path(item).resolve()
            if log == source or (source.is_dir() and source in log.parents):
                raise VaeedofError(f"--log {args.log}: is or lies inside {item}, which the command reads or "
                                   "writes; the log goes elsewhere")


# Commands that read no parameters: `--set` given to them is refused, never silently ignored.
READS_NO_PARAMETERS = ("align", "dvc-yaml", "runs", "readme", "assets list")


def _check_overrides(args) -> None:
    command = f"{args.command} {args.action}" if args.command == "assets" else args.command
    if args.set and command in READS_NO_PARAMETERS:
        raise VaeedofError(f"--set {args.set[0]}: `vaeedof {command}` reads no parameters")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _check_overrides(args)
        _check_log_path(args)
    except VaeedofError as exc:
        print(f"vaeedof: error: {exc}", file=sys.stderr)
        return 2
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
