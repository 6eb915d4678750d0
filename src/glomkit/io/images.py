"""Patch image files: what counts as one, and finding them among files and folders."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from glomkit import GlomkitError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def is_image_file(path: Path) -> bool:
    """A file whose suffix is one of ``IMAGE_SUFFIXES`` (any case)."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def collect_images(inputs: Iterable[str | Path], skip_dirs: Iterable[str] = ()) -> list[Path]:
    """Files given as such, plus every image under the given folders (recursive, sorted).

    Folders named in ``skip_dirs`` (e.g. ``masks``) are not searched. A missing input, or no image
    at all, is a one-line ``GlomkitError``.
    """
    inputs = [Path(p) for p in inputs]
    skip = set(skip_dirs)
    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            out += sorted(
                q for q in p.rglob("*") if is_image_file(q) and not skip & set(q.relative_to(p).parts)
            )
        elif p.is_file():
            out.append(p)
        else:
            raise GlomkitError(f"{p}: no such file or folder")
    if not out:
        raise GlomkitError(f"{', '.join(map(str, inputs))}: no images found")
    return out


# --------------------------------------------------------------------------- decoding with a pixel limit

DEFAULT_MAX_PIXELS = 300_000_000  # ~17300² px: 900 MB as RGB; --max-pixels raises it
_MAX_PIXELS: list[int] = [DEFAULT_MAX_PIXELS]


def set_max_pixels(n: int | None) -> None:
    """Set the pixel limit of :func:`check_pixels` for this process (None: the default)."""
    if n is not None and n < 1:
        raise GlomkitError(f"--max-pixels {n}: must be at least 1")
    _MAX_PIXELS[0] = DEFAULT_MAX_PIXELS if n is None else int(n)


def max_pixels() -> int:
    """The pixel limit: :func:`set_max_pixels`, else ``GLOMKIT_MAX_PIXELS``, else the default."""
    import os

    if _MAX_PIXELS[0] != DEFAULT_MAX_PIXELS:
        return _MAX_PIXELS[0]
    env = os.environ.get("GLOMKIT_MAX_PIXELS")
    return int(env) if env and env.isdigit() and int(env) > 0 else DEFAULT_MAX_PIXELS


def declared_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) an image file declares in its header, read without decoding; None if unknown."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(path) as im:
                    return int(im.size[0]), int(im.size[1])
            finally:
                Image.MAX_IMAGE_PIXELS = old
    except Exception:  # noqa: BLE001 - not an image PIL knows: the decoder will say
        return None


class PixelLimitError(GlomkitError):
    """An image declares more pixels than the limit (--max-pixels)."""


def check_pixels(path: str | Path, size: tuple[int, int] | None = None, limit: int | None = None) -> None:
    """PixelLimitError (a GlomkitError) when the image at ``path`` declares more pixels than the limit."""
    size = size if size is not None else declared_size(path)
    limit = limit if limit is not None else max_pixels()
    if size is not None and size[0] * size[1] > limit:
        raise PixelLimitError(
            f"{path}: declares {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, more than the limit of "
            f"{limit:,} (a decompression bomb?); raise it with --max-pixels"
        )


_REDUCED = ((8, "IMREAD_REDUCED_COLOR_8"), (4, "IMREAD_REDUCED_COLOR_4"), (2, "IMREAD_REDUCED_COLOR_2"))


def read_rgb(path: str | Path, min_size: tuple[int, int] | None = None) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3); a one-line GlomkitError naming the file otherwise.

    The pixel limit is checked on the header before decoding. With ``min_size`` (h, w), a JPEG at
    least 2, 4 or 8 times larger than it is decoded at that reduction (libjpeg's DCT scaling), so
    memory follows the size the caller needs, not the file. CMYK images are converted to RGB.
    """
    import cv2

    path = Path(path)
    size = declared_size(path)
    check_pixels(path, size)
    flag = cv2.IMREAD_COLOR
    if min_size is not None and size is not None and path.suffix.lower() in (".jpg", ".jpeg"):
        for k, name in _REDUCED:
            if size[0] >= k * min_size[1] and size[1] >= k * min_size[0]:
                flag = getattr(cv2, name)
                break
    suffix = path.suffix.lower()
    tiff_error = None
    if suffix in (".tif", ".tiff"):  # tifffile first: colour maps, alpha and CMYK are applied
        try:
            img = _tiff_rgb(path)
        except PixelLimitError:
            raise
        except GlomkitError as exc:  # a layout tifffile's path does not take: OpenCV may
            img, tiff_error = None, exc
        if img is not None:
            return img
    if suffix == ".png":  # keep the alpha channel, to composite it on white
        flag = cv2.IMREAD_UNCHANGED
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
        img = cv2.imdecode(data, flag) if data.size else None
    except (OSError, cv2.error, MemoryError) as exc:
        raise GlomkitError(f"{path}: not a readable image ({type(exc).__name__})") from None
    if img is None:
        if tiff_error is not None:
            raise tiff_error
        raise GlomkitError(f"{path}: not a readable image (corrupt, truncated or unsupported)")
    return cv_to_rgb(img, path)


def cv_to_rgb(img: np.ndarray, path: str | Path) -> np.ndarray:
    """An OpenCV-decoded image (grey, BGR or BGRA; 8 or 16 bit) as RGB uint8, alpha on white."""
    import cv2

    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    if img.dtype != np.uint8:
        raise GlomkitError(f"{path}: unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return composite_on_white(cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA))
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise GlomkitError(f"{path}: expected an RGB image, got {img.shape[2]} channels")


def _tiff_rgb(path: Path) -> np.ndarray | None:
    try:
        import tifffile

        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            check_pixels(path, (int(page.imagewidth), int(page.imagelength)))
            arr = page.asarray()
            return to_rgb8(arr, int(page.photometric), path, page.colormap)
    except GlomkitError:
        raise
    except Exception:  # noqa: BLE001 - unreadable: the caller reports it
        return None


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """RGB uint8 of a straight-alpha RGBA uint8 image over white (transparent areas are white)."""
    a = rgba[:, :, 3:4].astype(np.uint16)
    if a.size and int(a.min()) == 255:
        return np.ascontiguousarray(rgba[:, :, :3])
    rgb = rgba[:, :, :3].astype(np.uint16) * a + 255 * (255 - a)  # at most 255 * 255: fits uint16
    return ((rgb + 127) // 255).astype(np.uint8)


def rgb_input(image: object, where: str) -> np.ndarray:
    """The one input rule of glomkit's models for numpy images (the Detector's, Classifier's and
    Segmenter's): uint8 (H, W, 3) RGB, or (H, W, 4) RGBA composited on white. Floats, 16-bit,
    grey or empty arrays are a one-line GlomkitError naming ``where``, never silently cast."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        hint = ""
        if a.dtype.kind == "f":
            hint = "; for floats in [0, 1] pass (x * 255).round().astype(np.uint8)"
        raise GlomkitError(f"{where}: expected an RGB uint8 array (values 0-255), got {a.dtype}{hint}")
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise GlomkitError(
            f"{where}: expected an RGB uint8 array (H, W, 3) or RGBA (H, W, 4), got shape {a.shape}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise GlomkitError(f"{where}: an empty image (shape {a.shape})")
    return composite_on_white(a) if a.shape[2] == 4 else a


def to_rgb8(
    arr: np.ndarray, photometric: int | None, path: str | Path, colormap: np.ndarray | None = None
) -> np.ndarray:
    """An (H, W[, C]) array from a TIFF page as RGB uint8: a palette image (photometric 3) through
    its ``colormap`` (3, 2**bits), CMYK (5) converted, grey repeated, alpha composited on white,
    16-bit scaled; other layouts are a GlomkitError naming the file."""
    arr = np.asarray(arr)
    if photometric == 3:
        return _palette_rgb(arr, colormap, path)
    if arr.dtype == np.uint16:
        arr = (arr // 257).astype(np.uint8)
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        raise GlomkitError(f"{path}: unsupported pixel type {arr.dtype}")
    if arr.ndim == 2:
        if photometric == 0:  # MINISWHITE
            arr = 255 - arr
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3:
        raise GlomkitError(f"{path}: expected an RGB image, got an array of shape {arr.shape}")
    if photometric == 5:  # SEPARATED: CMYK ink coverage
        if arr.shape[2] < 4:
            raise GlomkitError(f"{path}: a CMYK image with {arr.shape[2]} channels")
        cmy = arr[:, :, :3].astype(np.uint16)
        k = arr[:, :, 3:4].astype(np.uint16)
        return ((255 - cmy) * (255 - k) // 255).astype(np.uint8)
    if photometric not in (None, 1, 2) or arr.shape[2] < 3:
        raise GlomkitError(
            f"{path}: unsupported colour layout (TIFF photometric {photometric}, {arr.shape[2]} channels)"
        )
    if arr.shape[2] >= 4:  # an extra sample after RGB: alpha
        return composite_on_white(arr[:, :, :4])
    return np.ascontiguousarray(arr[:, :, :3])


def _palette_rgb(index: np.ndarray, colormap: np.ndarray | None, path: str | Path) -> np.ndarray:
    """RGB uint8 of a palette image: each index looked up in its TIFF colour map (16-bit entries)."""
    if colormap is None:
        raise GlomkitError(f"{path}: a palette image without its colour map")
    cmap = np.asarray(colormap)
    if cmap.ndim != 2 or cmap.shape[0] != 3 or index.ndim != 2 or index.dtype.kind not in "ub":
        raise GlomkitError(
            f"{path}: unsupported palette image (colour map {cmap.shape}, indices {index.shape})"
        )
    if cmap.max() > 255:  # TIFF colour maps are 16-bit: 65535 is full intensity
        lut = (cmap.T.astype(np.uint32) // 257).astype(np.uint8)
    else:  # a writer that stored 8-bit values
        lut = cmap.T.astype(np.uint8)
    idx = index.astype(np.intp)
    if idx.size and int(idx.max()) >= len(lut):
        raise GlomkitError(f"{path}: palette index {int(idx.max())} beyond its {len(lut)}-entry colour map")
    return lut[idx]
