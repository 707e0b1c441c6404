"""The user-facing fusion path: `vaeedof fuse` (files in, a file out) and `vaeedof.fusion.fuse`
(tensors in, a tensor out)."""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..errors import VaeedofError
from ..images import (
    READ_SUFFIXES,
    LoadedImage,
    check_output_path,
    image_size,
    load_image,
    save_image,
)
from ..logs import get_logger, progress
from .align import align_stack
from .engine import DEFAULT_TILE, FOCUS_CONFIDENCE, FOCUS_INDEX, Fuser, carrying_focus_index
from .vae_check import check_inputs

ALIGN_STAGE = "align"  # the owner of `vaeedof align`'s output folder (atomic.OWNER_FILE)
DEPTH_SUFFIXES = (".png", ".tif", ".tiff")  # 16-bit grey


def expand_inputs(items: list[str]) -> list[Path]:
    """Files as given; folders as their images (sorted by name); glob patterns expanded."""
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = _images_in(path)
            if not found:
                raise VaeedofError(f"{path}: folder holds no images")
            paths += found
        elif any(ch in item for ch in "*?[") and not path.exists():
            matches = _frames([Path(m) for m in sorted(glob.glob(item))], item)
            if not matches:
                raise VaeedofError(f"{item}: pattern matches no file")
            paths += matches
        else:
            paths.append(path)
    if not paths:
        raise VaeedofError("no input images")
    return paths


def fuse(images: list[torch.Tensor], checkpoint: str | os.PathLike | None = None, device: str = "auto",
         tile: int | None = DEFAULT_TILE, resources_dir: str | os.PathLike | None = None,
         mirrors: list[str] | None = None, mode: str | None = None) -> torch.Tensor:
    """Fuse same-size (3, H, W) images in [0, 1] (any number) into one (3, H, W) image, with the
    defaults of `vaeedof fuse` outside a project: the model it chooses (`checkpoint`, else
    models/fusion_ema.safetensors here, else the release model) and the parameters' output mode
    (`fusion.output`: hybrid; a model trained without the hybrid loss falls back to latent with a
    warning, while an explicit `mode="hybrid"` is refused for it). mode: "latent" (the paper:
    every pixel decoded) or "hybrid" (exact in-focus input pixels)."""
    from ..assets.fetch import default_resources_dir
    from ..params import schema_defaults
    from .loader import load_fuser

    if not images:
        raise VaeedofError("no input images")
    sizes = {tuple(image.shape) for image in images}
    if len(sizes) > 1:
        raise VaeedofError(f"input sizes differ: {sorted(sizes)}")
    chosen = mode or schema_defaults()["fusion"]["output"]
    fuser = load_fuser(checkpoint, device, tile, resources_dir or default_resources_dir(), mirrors or [],
                       chosen, strict_mode=mode is not None)
    return fuser.fuse(list(images))


def find_stacks(folders: list[str | os.PathLike], limit: int | None = None) -> list[tuple[str, list[Path]]]:
    """(name, image files) of the focus stacks in the given folders: a folder of images is one
    stack, a folder of such folders holds several; in name order, at most `limit`."""
    stacks = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise VaeedofError(f"{folder}: stack folder not found")
        direct = _images_in(folder)
        if len(direct) >= 2:
            stacks.append((folder.name, direct))
            continue
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            images = _images_in(sub)
            if len(images) >= 2:
                stacks.append((sub.name, images))
            elif images:
                get_logger().warning("%s: skipped, one image (a stack needs two or more)", sub)
    return stacks[:limit]


def _images_in(folder: Path, report: bool = True) -> list[Path]:
    return _frames(sorted(p for p in folder.iterdir() if p.suffix.lower() in READ_SUFFIXES), folder, report)


def _frames(paths: list[Path], where, report: bool = True) -> list[Path]:
    """The paths that can be frames: hidden files (an unfinished atomic write of ours,
    `.NAME.XXXX.tmp.png`; a macOS resource file, `._NAME.png`) and empty files are skipped,
    with one line saying which (`report`)."""
    kept, skipped = [], []
    for path in paths:
        if path.name.startswith("."):
            skipped.append(f"{path.name} (hidden)")
        elif path.is_file() and path.stat().st_size == 0:
            skipped.append(f"{path.name} (empty)")
        else:
            kept.append(path)
    if skipped and report:
        get_logger().info("%s: skipped %s", where, ", ".join(skipped))
    return kept


def is_folder_of_stacks(items: list[str]) -> bool:
    """One folder holding no images itself but sub-folders that do: many stacks at once."""
    return (len(items) == 1 and Path(items[0]).is_dir() and not _images_in(Path(items[0]), report=False)
            and any(sub.is_dir() and _images_in(sub, report=False) for sub in Path(items[0]).iterdir()))


def check_sizes(paths: list[Path]) -> None:
    """Every frame the same size, from the headers alone (before anything is decoded)."""
    sizes = [image_size(path) for path in paths]
    if len(set(sizes)) > 1:
        listing = ", ".join(f"{path.name} {w}x{h}" for path, (w, h) in zip(paths, sizes, strict=True))
        raise VaeedofError(f"input sizes differ: {listing}")


def load_stack(paths: list[Path]) -> list[LoadedImage]:
    check_sizes(paths)
    loaded = [load_image(path) for path in paths]
    if len(loaded) == 1:
        get_logger().warning("%s: only one input; the result is its VAE-fused reconstruction", paths[0])
    return loaded


def write_fused(fuser, loaded: list[LoadedImage], output: Path, vae_check_db: float | None,
                align: str = "auto", motion: str = "similarity", depth_map: Path | None = None,
                depth_confidence: Path | None = None) -> Path:
    """Align (`align`: auto, on, off), encode every input once, check its reconstruction on
    those encodings, fuse, and write atomically: 16 bits when the first input has them and the
    format allows; the first input's ICC profile is kept. `depth_map`: also write which frame each
    pixel took (`write_depth_map`), and with `depth_confidence` how decided that was."""
    images = [im.data for im in loaded]  # as stored: converted to float tile by tile
    with fuser.timed("align"):
        images, alignment = align_stack(images, [str(im.path) for im in loaded], align, motion)
    if alignment is not None:
        get_logger().info("alignment: largest displacement %.2f px, largest exposure change %.1f %%, %s",
                          alignment.max_shift_px, 100 * alignment.exposure_change,
                          "frames aligned" if alignment.applied else "frames left as they are")
    if depth_map is not None:
        images = carrying_focus_index(images)
    # The network sees each frame once (a deep stack's merged frames on the fast path), at the
    # scale it decides on; the check reuses those encodings.
    images, names = fuser.merge_deep(images, names=[str(im.path) for im in loaded])
    scale = fuser.decision_scale(*images[0].shape[-2:])
    views = [fuser.network_view(image, scale) for image in images]
    latents = [fuser.encode(view) for view in views]
    if vae_check_db is not None:
        with fuser.timed("vae_check"):
            check_inputs(fuser.vae, list(zip(names, views, strict=True)), vae_check_db, latents)
    fused = fuser.fuse(images, latents=latents)
    first = loaded[0]
    with fuser.timed("write"):
        save_image(fused[:3], output, bits=first.bits, icc_profile=first.icc_profile)
        if depth_map is not None:
            write_depth_map(fused[FOCUS_INDEX], len(loaded), depth_map)
        if depth_confidence is not None:
            write_grey16(fused[FOCUS_CONFIDENCE], depth_confidence)
    get_logger().info("fused %d images into %s%s", len(loaded), output,
                      f" and their depth map into {depth_map}" if depth_map is not None else "")
    return output


def write_depth_map(index: torch.Tensor, frames: int, path: Path) -> None:
    """Which frame each pixel took, (H, W) in [0, frames - 1], as a 16-bit grey image (PNG or
    TIFF): frame k as k / (frames - 1) x 65535, so 0 the first frame and 65535 the last."""
    write_grey16(index / max(frames - 1, 1), path)


def write_grey16(values: torch.Tensor, path: Path) -> None:
    """(H, W) in [0, 1] as a 16-bit grey PNG or TIFF, atomically."""
    from PIL import Image

    from .. import atomic

    scaled = (values.clamp(0, 1) * 65535).round().to(torch.int32).numpy().astype(np.uint16)
    atomic.write_pil_image(Image.fromarray(scaled), path)  # mode I;16


def check_depth_map_path(path: str | os.PathLike, taken: list[Path], inputs: list[Path]) -> Path:
    """A depth map's (or its confidence's) file name, checked before any work as the output's is:
    16-bit PNG or TIFF, none of the other outputs' names (`taken`)."""
    path = check_output_path(path, inputs)
    if path.suffix.lower() not in DEPTH_SUFFIXES:
        raise VaeedofError(f"{path}: a depth map is 16-bit: use .png or .tif")
    if any(path.resolve() == Path(other).resolve() for other in taken):
        raise VaeedofError(f"{path}: would overwrite another output of this command; name another file")
    return path


def fuse_files(inputs: list[Path], output: str | os.PathLike, open_fuser: Callable[[], Fuser],
               vae_check_db: float | None = None, align: str = "auto", motion: str = "similarity",
               depth_map: str | os.PathLike | None = None,
               depth_confidence: str | os.PathLike | None = None) -> Path:
    """`vaeedof fuse A B ... -o OUT [--depth-map MAP]`: inputs and outputs checked before the
    model is loaded."""
    output = check_output_path(output, inputs)
    if depth_confidence is not None and depth_map is None:
        raise VaeedofError(f"{depth_confidence}: a depth confidence goes with a depth map (--depth-map)")
    if depth_map is not None:
        depth_map = check_depth_map_path(depth_map, [output], inputs)
    if depth_confidence is not None:
        depth_confidence = check_depth_map_path(depth_confidence, [output, depth_map], inputs)
    loaded = load_stack(inputs)
    fuser = open_fuser()
    if depth_map is not None and fuser.mode != "hybrid":
        raise VaeedofError(f"{depth_map}: a depth map needs the hybrid output; this run fuses in latent "
                           "mode (--mode latent, or a model trained without the hybrid loss)")
    return write_fused(fuser, loaded, output, vae_check_db, align, motion, depth_map, depth_confidence)


def fuse_folders(stacks: list[tuple[str, list[Path]]], out_dir: str | os.PathLike,
                 open_fuser: Callable[[], Fuser], suffix: str = ".png",
                 vae_check_db: float | None = None, align: str = "auto",
                 motion: str = "similarity") -> list[Path]:
    """`vaeedof fuse STACKS/ -o OUT/`: one output per stack folder, the model loaded once."""
    out_dir = Path(out_dir)
    if not stacks:
        raise VaeedofError("no focus stacks found")
    if out_dir.exists() and not out_dir.is_dir():
        raise VaeedofError(f"{out_dir}: is a file; a folder of stacks is fused into a folder")
    for name, paths in stacks:  # every stack's headers before any work
        with _naming_stack(name):
            check_sizes(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = [check_output_path(out_dir / f"{name}{suffix}", paths) for name, paths in stacks]
    fuser = open_fuser()
    failed = []
    for (name, paths), target in progress(list(zip(stacks, targets, strict=True)), desc="stacks"):
        try:
            with _naming_stack(name):
                write_fused(fuser, load_stack(paths), target, vae_check_db, align, motion)
        except VaeedofError as exc:  # one damaged stack does not cost the others
            get_logger().error("%s; the other stacks go on", exc)
            failed.append(name)
    if failed:
        raise VaeedofError(f"{len(failed)} of {len(stacks)} stacks not fused ({', '.join(failed)}; "
                           f"named above); the others are in {out_dir}")
    return targets


@contextlib.contextmanager
def _naming_stack(name: str) -> Iterator[None]:
    try:
        yield
    except VaeedofError as exc:
        raise VaeedofError(f"stack {name}: {exc}") from None


def fuse_items(items: list[str], output: str | os.PathLike, open_fuser: Callable[[], Fuser],
               suffix: str = ".png", **options) -> list[Path]:
    """`vaeedof fuse ITEMS -o OUTPUT`: one stack (files, folders, patterns), or one folder of
    stack folders (OUTPUT a folder); `options`: vae_check_db, align, motion, depth_map (one stack)."""
    if is_folder_of_stacks(items):
        if options.pop("depth_map", None) is not None or options.pop("depth_confidence", None) is not None:
            raise VaeedofError(f"{items[0]}: --depth-map takes one stack, not a folder of stacks")
        return fuse_folders(find_stacks(items), output, open_fuser, suffix, **options)
    return [fuse_files(expand_inputs(items), output, open_fuser, **options)]


def write_aligned(loaded: list, out_dir, model: str = "similarity") -> list:
    """`vaeedof align`: aligned frames as PNG (16-bit kept) plus transforms.json in out_dir. Every
    output name is checked before anything is written: no two frames may share one, none may be an
    input, and out_dir must be empty or written by `align` before."""
    from .. import atomic
    from ..images import as_float

    out_dir = Path(out_dir)
    if len(loaded) < 2:
        raise VaeedofError(f"{loaded[0].path}: one frame; aligning needs two or more")
    targets = [out_dir / f"{image.path.stem}.png" for image in loaded]
    inputs = {image.path.resolve(): image.path for image in loaded}
    for target in targets:
        if target.resolve() in inputs:
            raise VaeedofError(f"{target}: output would overwrite the input {inputs[target.resolve()]}; "
                               "choose another -o folder")
        clashes = [str(other.path) for other, t in zip(loaded, targets, strict=True) if t == target]
        if len(clashes) > 1:
            raise VaeedofError(f"{target}: {' and '.join(clashes)} would both be written there; "
                               "rename one of them")
    atomic.check_replaceable(out_dir, ALIGN_STAGE)
    names = [im.path.name for im in loaded]
    frames, alignment = align_stack([im.data for im in loaded], names, "on", model)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.mark_owner(out_dir, ALIGN_STAGE)
    for image, frame, target in zip(loaded, frames, targets, strict=True):
        save_image(as_float(frame), target, bits=image.bits, icc_profile=image.icc_profile)
    atomic.write_json(out_dir / "transforms.json", alignment.as_json(names))
    return targets
