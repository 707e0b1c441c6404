"""Reading and writing user images.

Reading: JPEG/PNG/TIFF (anything Pillow opens), EXIF orientation honoured, grey/palette/RGBA/
16-bit brought to float RGB in [0, 1] (alpha dropped), the bit depth and ICC profile kept for
writing. Writing: PNG/TIFF at 8 or 16 bits, JPEG at 8, atomically. Every failure is a one-line
error naming the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from . import atomic
from .errors import VaeedofError
from .logs import get_logger

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


# What libjpeg and libpng print, without failing, for damaged data: for an input it is an error.
CORRUPTION_MESSAGES = re.compile(r"Corrupt JPEG data|Premature end of JPEG|Invalid JPEG|Bogus|"
                                 r"libpng error|CRC error|Not a JPEG")


@contextlib.contextmanager
def _decoder_messages() -> Iterator[list[str]]:
    """What C decoders write to the process's stderr meanwhile (Python cannot redirect it), as
    lines; passed on to stderr afterwards unless they name corruption."""
    lines: list[str] = []
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a daemon): nothing to read the messages from
        yield lines
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines += capture.read().decode(errors="replace").splitlines()


def _decode(path: Path) -> np.ndarray:
    """Pixels at their stored depth (uint8 or uint16), RGB(A) or grey, EXIF orientation not yet
    applied. OpenCV keeps 16-bit colour, which Pillow reduces to 8 bits. Decoder warnings about
    damaged data stop with the file named."""
    import cv2

    with _decoder_messages() as messages:
        array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    damage = [line.strip() for line in messages if CORRUPTION_MESSAGES.search(line)]
    if damage:
        raise VaeedofError(f"{path}: corrupt image data ({damage[0]})")
    for line in messages:
        print(line, file=sys.stderr)
    if array is None:
        with Image.open(path) as image:  # formats OpenCV lacks (GIF); oriented by the caller
            return np.array(image.convert("RGB"))
    if array.ndim == 3:
        array = array[..., [2, 1, 0, 3][: array.shape[2]]]  # BGR(A) -> RGB(A)
    return array


def _orientation(path: Path, header: Image.Image) -> int:
    """The EXIF orientation tag (1-8), from the header: Pillow finds a PNG's eXIf chunk by
    decoding the whole image, so PNG chunks are walked here instead."""
    if header.format != "PNG":
        return header.getexif().get(0x0112, 1)
    with open(path, "rb") as handle:
        handle.seek(8)
        while len(chunk := handle.read(8)) == 8:
            length, kind = struct.unpack(">I4s", chunk)
            if kind == b"eXIf":
                exif = Image.Exif()
                exif.load(handle.read(length))
                return exif.get(0x0112, 1)
            if kind in (b"IEND", b""):
                break
            handle.seek(length + 4, os.SEEK_CUR)  # the data and its CRC
    return 1


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply the EXIF orientation (1-8) to an array decoded without it."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
           7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1], 8: lambda a: np.swapaxes(a, 0, 1)[::-1]}
    return ops[orientation](array) if orientation in ops else array


def _open_header(path: Path) -> Image.Image:
    """Open for metadata with our own pixel bound (Pillow's bomb check, which ends in a
    traceback, is replaced by it); nothing is decoded."""
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
    return header


@contextlib.contextmanager
def _named_errors(path: Path) -> Iterator[None]:
    """Every failure to read `path` as one line naming it."""
    try:
        yield
    except FileNotFoundError:
        raise VaeedofError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise VaeedofError(f"{path}: is a folder, not an image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = "empty file" if path.exists() and path.stat().st_size == 0 else str(exc)
        raise VaeedofError(f"{path}: unreadable or corrupt image ({reason})") from None


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) as the image is shown (EXIF orientation applied), from its header alone:
    stacks are compared before any frame is decoded."""
    path = Path(path)
    with _named_errors(path), _open_header(path) as header:
        width, height = header.size
        turned = _orientation(path, header) in (5, 6, 7, 8)
    return (height, width) if turned else (width, height)


def load_image(path: str | os.PathLike) -> LoadedImage:
    path = Path(path)
    with _named_errors(path), _open_header(path) as header:  # metadata: orientation, ICC profile
        pages = getattr(header, "n_frames", 1)
        if pages > 1 and header.format != "MPO":  # (an MPO's second page is its preview)
            get_logger().warning("%s: holds %d pages; only the first is used", path, pages)
        icc = header.info.get("icc_profile")
        array = _orient(_decode(path), _orientation(path, header))
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
    """An output file name that can be written, checked before any work: a folder, an unknown
    format, an input, a missing or read-only folder are each one line naming `path`."""
    path = Path(path)
    if path.is_dir():
        raise VaeedofError(f"{path}: is a folder; name the output file (e.g. {path / 'fused.png'})")
    if path.suffix.lower() not in WRITE_SUFFIXES:
        raise VaeedofError(f"{path}: unsupported output format (use .png, .jpg or .tif)")
    if not path.parent.is_dir():
        raise VaeedofError(f"{path}: output folder {path.parent} does not exist")
    resolved = path.resolve()
    if any(resolved == Path(p).resolve() for p in inputs):
        raise VaeedofError(f"{path}: output path is one of the inputs; refusing to overwrite it")
    try:  # the atomic write's first step, undone
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise VaeedofError(f"{path}: cannot be written ({exc.strerror or exc})") from None
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
    atomic.write_pil_image(image, path, format=fmt, **extra)


def _save_png16(data: np.ndarray, path: Path, icc_profile: bytes | None) -> None:
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
