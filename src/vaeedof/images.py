"""Reading and writing user images.

Reading: JPEG/PNG/TIFF (anything Pillow opens), EXIF orientation honoured, grey/palette/RGBA/
16-bit brought to float RGB in [0, 1] (alpha dropped), the bit depth and ICC profile kept for
writing. Writing: PNG/TIFF at 8 or 16 bits, JPEG at 8, atomically. Every failure is a one-line
error naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from . import atomic
from .errors import VaeedofError

READ_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}
# Bound on one input's pixels (16384^2): larger headers are refused before any decoding.
MAX_INPUT_PIXELS = 16384 * 16384
WRITE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}


@dataclass
class LoadedImage:
    data: torch.Tensor  # (3, H, W): uint8 for 8-bit files (a quarter of float's memory), else float32
    bits: int
    icc_profile: bytes | None
    path: Path

    @property
    def pixels(self) -> torch.Tensor:
        """(3, H, W) float32 in [0, 1] (a new tensor for 8-bit files)."""
        return as_float(self.data)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.data.shape[2], self.data.shape[1]


def as_float(image: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] as float32: uint8 data divided by 255 (bit-identical to decoding the file
    to float directly), float data as it is."""
    return image.float() / 255 if image.dtype == torch.uint8 else image.float()


def _open(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return ImageOps.exif_transpose(image)


def _decode(path: Path) -> np.ndarray:
    """Pixels at their stored depth (uint8 or uint16), RGB(A) or grey, EXIF orientation not yet
    applied. OpenCV keeps 16-bit colour, which Pillow reduces to 8 bits."""
    import cv2

    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if array is None:
        return np.asarray(_open(path).convert("RGB"))  # formats OpenCV lacks; Pillow rotated it
    if array.ndim == 3:
        array = array[..., [2, 1, 0, 3][: array.shape[2]]]  # BGR(A) -> RGB(A)
    return array


def _orient(array: np.ndarray, image: Image.Image) -> np.ndarray:
    """Apply the EXIF orientation tag (1-8) to an array decoded without it."""
    orientation = image.getexif().get(0x0112, 1)
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
           7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1], 8: lambda a: np.swapaxes(a, 0, 1)[::-1]}
    return ops[orientation](array) if orientation in ops else array


def _open_header(path: Path) -> Image.Image:
    """Open for metadata with our own pixel bound (Pillow's bomb check, which ends in a
    traceback, is replaced by it), and catch truncation that libjpeg only warns about."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        header = Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    width, height = header.size
    if width * height > MAX_INPUT_PIXELS:
        header.close()
        raise VaeedofError(f"{path}: {width}x{height} pixels exceeds the limit of "
                           f"{MAX_INPUT_PIXELS:,} pixels per input")
    if header.format in ("JPEG", "MPO"):
        # OpenCV fills a truncated JPEG with grey and only prints a warning; Pillow raises.
        with Image.open(path) as full:
            full.load()
    return header


def load_image(path: str | os.PathLike) -> LoadedImage:
    path = Path(path)
    try:
        with _open_header(path) as header:  # metadata: orientation, ICC profile
            icc = header.info.get("icc_profile")
            array = _orient(_decode(path), header)
    except FileNotFoundError:
        raise VaeedofError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise VaeedofError(f"{path}: is a folder, not an image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = "empty file" if path.exists() and path.stat().st_size == 0 else str(exc)
        raise VaeedofError(f"{path}: unreadable or corrupt image ({reason})") from None
    bits = 16 if array.dtype == np.uint16 else 8
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    array = array[..., :3]  # alpha dropped: fusion is of colour
    if bits == 16:
        array = array.astype(np.float32) / 65535.0
    tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    return LoadedImage(tensor, bits, icc, path)


# Identical images: this many dB, so means over patches and scenes stay finite.
PSNR_CAP_DB = 99.0


def psnr(a, b) -> float:
    """PSNR in dB of two images in [0, 1] (torch tensors or NumPy arrays), at most PSNR_CAP_DB."""
    diff = (a.float() - b.float()) if isinstance(a, torch.Tensor) else (np.asarray(a) - np.asarray(b))
    mse = float((diff**2).mean())
    return PSNR_CAP_DB if mse == 0 else min(PSNR_CAP_DB, -10.0 * float(np.log10(mse)))


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]."""
    return load_image(path).pixels


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] -> an 8-bit RGB image, for contact sheets and previews."""
    return Image.fromarray((image.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))


def check_output_path(path: str | os.PathLike, inputs: list[Path]) -> Path:
    path = Path(path)
    if path.suffix.lower() not in WRITE_SUFFIXES:
        raise VaeedofError(f"{path}: unsupported output format (use .png, .jpg or .tif)")
    if not path.parent.is_dir():
        raise VaeedofError(f"{path}: output folder {path.parent} does not exist")
    resolved = path.resolve()
    if any(resolved == Path(p).resolve() for p in inputs):
        raise VaeedofError(f"{path}: output path is one of the inputs; refusing to overwrite it")
    return path


def save_image(pixels: torch.Tensor, path: str | os.PathLike, bits: int = 8,
               icc_profile: bytes | None = None) -> None:
    """Write (3, H, W) in [0, 1] atomically; 16 bits where the format allows (PNG, TIFF)."""
    path = Path(path)
    fmt = WRITE_SUFFIXES[path.suffix.lower()]
    array = pixels.clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    extra = {"icc_profile": icc_profile} if icc_profile else {}
    if bits == 16 and fmt in ("PNG", "TIFF"):
        data = (array * 65535 + 0.5).astype(np.uint16)
        if fmt == "PNG":
            # Pillow cannot write 16-bit colour PNGs: encoded here, with the ICC profile.
            _save_png16(data, path, icc_profile)
        else:
            import cv2  # 16-bit colour TIFF (OpenCV drops the ICC profile)

            with atomic.atomic_path(path, suffix=path.suffix) as tmp:
                if not cv2.imwrite(str(tmp), data[..., ::-1]):
                    raise VaeedofError(f"{path}: could not write 16-bit TIFF")
        return
    else:
        image = Image.fromarray((array * 255 + 0.5).astype(np.uint8), mode="RGB")
        if fmt == "JPEG":
            extra["quality"] = 95
    atomic.save_image(image, path, format=fmt, **extra)


def _save_png16(data: np.ndarray, path: Path, icc_profile: bytes | None) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
            ">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    height, width = data.shape[:2]
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    rows = data.astype(">u2").reshape(height, width * 3)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    parts = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", header)]
    if icc_profile:
        parts.append(chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc_profile)))
    parts += [chunk(b"IDAT", zlib.compress(raw, 6)), chunk(b"IEND", b"")]
    atomic.write_bytes(path, b"".join(parts))
