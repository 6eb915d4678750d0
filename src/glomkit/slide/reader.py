"""One ``Slide`` over OpenSlide formats and plain images, read at a target mpp.

Coordinates given to and returned by this module's public methods are level-0 pixels
(OpenSlide's absolute frame, so bounds offsets of formats such as MRXS are honoured).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from glomkit import GlomkitError
from glomkit.core.units import MPP_RANGE

OPENSLIDE_SUFFIXES = {
    ".svs",
    ".ndpi",
    ".scn",
    ".mrxs",
    ".tif",
    ".tiff",
    ".bif",
    ".vms",
    ".vmu",
    ".svslide",
    ".dcm",
}
PLAIN_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
SLIDE_SUFFIXES = OPENSLIDE_SUFFIXES | PLAIN_SUFFIXES
STRIP_PX = 2048  # level-0 rows read at once when a slide lacks a suitable pyramid level
STRIP_MAX_PX = 1 << 25  # pixels of one strip at most (128 MB as OpenSlide's RGBA)


def check_mpp(mpp: float, where: str, what: str = "--mpp") -> float:
    """``mpp`` as a float when it is in ``MPP_RANGE``; else a GlomkitError naming ``where``."""
    lo, hi = MPP_RANGE
    try:
        f = float(mpp)
    except (TypeError, ValueError, OverflowError):
        raise GlomkitError(f"{where}: {what} must be a number of µm per pixel, got {mpp!r}") from None
    if not (math.isfinite(f) and lo <= f <= hi):
        raise GlomkitError(
            f"{where}: {what} {f:g} µm/px is outside the plausible range for microscopy [{lo:g}, {hi:g}]"
        )
    return f


def _tiff_mpp(path: Path) -> float | None:
    """µm/px from TIFF resolution tags (ResolutionUnit inch or cm), or None."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            tags = page.tags
            if "XResolution" not in tags or "ResolutionUnit" not in tags:
                return None
            num, den = tags["XResolution"].value
            unit = int(tags["ResolutionUnit"].value)
            if not num or not den:
                return None
            px_per_unit = num / den
            if unit == 2:  # inch
                return 25400.0 / px_per_unit
            if unit == 3:  # centimetre
                return 10000.0 / px_per_unit
    except Exception:  # noqa: BLE001 - any unreadable tag means "no mpp here"
        return None
    return None


MPP_TOLERANCE = 0.05  # a given mpp this far (relative) from a recorded one contradicts it


def override_arg(mpp_arg: str) -> str:
    """How messages name the override of ``mpp_arg``: ``--mpp-override`` for a CLI flag, else
    ``mpp_override=True``."""
    return "--mpp-override" if mpp_arg.lstrip().startswith("-") else "mpp_override=True"


def resolve_mpp(
    where: str, recorded: float | None, given: float | None, mpp_arg: str, override: bool
) -> tuple[float, str]:
    """(mpp, source) of a slide: ``source`` is "slide" (its recorded scale) or "user" (``given``).

    ``given`` is for images that record no (plausible) scale: against a recorded scale it is used
    only with ``override``; within ``MPP_TOLERANCE`` of it the recorded scale stays, and further off
    is a GlomkitError naming both scales and the override.
    """
    if given is not None:
        given = check_mpp(given, where, mpp_arg)
    if recorded is not None and given is None:
        what = f"the slide's recorded scale (pass {mpp_arg} to replace it)"
        return check_mpp(recorded, where, what), "slide"
    if given is None:
        raise GlomkitError(f"{where}: the slide does not record its scale; pass {mpp_arg} (µm per pixel)")
    lo, hi = MPP_RANGE
    if recorded is None or override or not (math.isfinite(recorded) and lo <= recorded <= hi):
        return given, "user"
    off = abs(given / recorded - 1.0)
    if off > MPP_TOLERANCE:
        raise GlomkitError(
            f"{where}: {mpp_arg} {given:g} µm/px contradicts the scale the slide records "
            f"({recorded:g} µm/px, {off:.0%} off); {mpp_arg} is for images that record no scale "
            f"(pass {override_arg(mpp_arg)} to use it anyway)"
        )
    return recorded, "slide"


class Slide:
    """A whole-slide image or a plain image, with its level-0 size and mpp.

    ``mpp`` (µm per level-0 pixel) comes from OpenSlide's ``openslide.mpp-x`` or TIFF resolution
    tags; the ``mpp`` argument (the user's ``--mpp``) gives the scale of images that record none.
    Where the slide records a scale, a given ``mpp`` within ``MPP_TOLERANCE`` of it changes nothing
    and one further off is refused, unless ``mpp_override`` (then the given one is used). Without
    any scale, opening fails with a message asking for ``mpp_arg``.
    """

    def __init__(
        self,
        path: str | Path,
        mpp: float | None = None,
        max_pixels: int | None = None,
        mpp_arg: str = "--mpp",
        mpp_override: bool = True,
    ) -> None:
        # mpp_arg: how the error messages name the mpp setting (the CLI's flag, or the API's mpp=).
        # mpp_override: the given mpp wins over a recorded one (glomkit's own callers, which pass
        # the scale a run recorded); the user-facing entry points pass the user's choice.
        self.path = Path(path)
        self.max_pixels = max_pixels
        if not self.path.exists():
            raise GlomkitError(f"{self.path}: no such file")
        if not self.path.is_file():
            raise GlomkitError(f"{self.path}: not a file")
        self._osr = None
        self._image: np.ndarray | None = None
        self._open()
        found = self._find_mpp()
        self.mpp, self.mpp_source = resolve_mpp(str(self.path), found, mpp, mpp_arg, mpp_override)
        self.mpp_recorded = found

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def from_array(cls, image: np.ndarray, mpp: float, name: str = "image") -> Slide:
        """A single-level slide over an RGB uint8 array (H, W, 3) at ``mpp`` µm/px (no file); RGBA
        is composited on white (``glomkit.io.images.rgb_input``, the input rule of every model)."""
        from glomkit.io.images import rgb_input

        img = rgb_input(image, "image")
        if mpp is None:
            raise GlomkitError("image: a numpy image records no scale; pass mpp= (µm per pixel)")
        self = cls.__new__(cls)
        self.path = Path(name)
        self.max_pixels = None
        self._osr = None
        self._set_image(img, "array")
        self.mpp = check_mpp(mpp, name, "mpp=")
        self.mpp_source = "user"
        self.mpp_recorded = None
        return self

    def _open(self) -> None:
        import openslide

        suffix = self.path.suffix.lower()
        fmt = None
        if suffix in OPENSLIDE_SUFFIXES:
            try:
                fmt = openslide.OpenSlide.detect_format(str(self.path))
            except Exception:  # noqa: BLE001
                fmt = None
        if fmt is not None:
            try:
                self._osr = openslide.OpenSlide(str(self.path))
            except Exception as exc:  # noqa: BLE001
                raise GlomkitError(
                    f"{self.path}: corrupt or truncated {fmt} slide; OpenSlide cannot read it ({_first_line(exc)})"
                ) from None
            self.format = fmt
            osr = self._osr
            self.level_dimensions = [tuple(map(int, d)) for d in osr.level_dimensions]
            self.level_downsamples = [float(d) for d in osr.level_downsamples]
            p = osr.properties
            self.width, self.height = self.level_dimensions[0]
            self.bounds = slide_bounds(p, self.width, self.height)
            if self.width <= 0 or self.height <= 0 or self.bounds[2] <= 0 or self.bounds[3] <= 0:
                raise GlomkitError(
                    f"{self.path}: the slide holds no image data (OpenSlide reports empty bounds; "
                    "every tile is missing)"
                )
            self._check_pyramid()
            return
        if suffix in OPENSLIDE_SUFFIXES and suffix not in PLAIN_SUFFIXES:
            raise GlomkitError(
                f"{self.path}: corrupt or truncated, or not a {suffix} slide (OpenSlide does not recognise it)"
            )
        if suffix not in PLAIN_SUFFIXES:
            raise GlomkitError(
                f"{self.path}: not a slide or image format glomkit reads ({suffix or 'no suffix'})"
            )
        from glomkit.io.images import check_pixels, cv_to_rgb, declared_size, to_rgb8

        size = declared_size(self.path)
        check_pixels(self.path, size, self.max_pixels)
        img = None
        if suffix in {".tif", ".tiff"}:
            try:
                import tifffile

                with tifffile.TiffFile(self.path) as tf:
                    page = tf.pages[0]
                    check_pixels(self.path, (int(page.imagewidth), int(page.imagelength)), self.max_pixels)
                    img = to_rgb8(page.asarray(), int(page.photometric), self.path, page.colormap)
            except GlomkitError:
                raise
            except Exception:  # noqa: BLE001 - let OpenCV try
                img = None
        if img is None:
            try:
                data = np.fromfile(self.path, dtype=np.uint8)
                dec = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
            except (cv2.error, MemoryError) as exc:
                raise GlomkitError(
                    f"{self.path}: cannot decode the image ({type(exc).__name__}; too large or corrupt)"
                ) from None
            if dec is None:
                raise GlomkitError(f"{self.path}: not a readable image (corrupt, truncated or unsupported)")
            img = cv_to_rgb(dec, self.path)  # alpha composited on white
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] < 3:
            raise GlomkitError(f"{self.path}: expected an RGB image, got an array of shape {img.shape}")
        if img.dtype != np.uint8:
            raise GlomkitError(f"{self.path}: unsupported pixel type {img.dtype}")
        self._set_image(img, "image")

    def pixel_limit(self) -> int:
        """The most pixels one read may decode: ``max_pixels``, else the process's ``--max-pixels``."""
        from glomkit.io.images import max_pixels

        return int(self.max_pixels) if self.max_pixels else max_pixels()

    def level_pixels(self, level: int) -> int:
        """Pixels of the bounds region at ``level``: what reading all of it decodes."""
        ds = self.level_downsamples[level]
        return int(math.ceil(self.bounds[2] / ds)) * int(math.ceil(self.bounds[3] / ds))

    def _check_pyramid(self) -> None:
        """Refuse, before any pixel is read, a slide whose coarsest level holds more pixels than the
        limit: a view of the whole slide (the tissue thumbnail) cannot be read cheaply from it."""
        limit = self.pixel_limit()
        coarsest = self.level_count - 1
        n = self.level_pixels(coarsest)
        if n > limit:
            w, h = self.level_dimensions[coarsest]
            raise GlomkitError(
                f"{self.path}: declares {self.width}x{self.height} px and its coarsest pyramid level "
                f"({w}x{h}) holds {n:,} pixels, more than the limit of {limit:,} (a decompression bomb, "
                "or a slide without a pyramid); raise it with --max-pixels"
            )

    def fitting_level(self, level: int, w: float, h: float) -> int:
        """``level``, or the next coarser one whose read of the level-0 box (w, h) decodes no more
        than :meth:`pixel_limit`; a GlomkitError when none does."""
        limit = self.pixel_limit()
        for lv in range(max(level, 0), self.level_count):
            ds = self.level_downsamples[lv]
            if math.ceil(w / ds) * math.ceil(h / ds) <= limit:
                return lv
        ds = self.level_downsamples[-1]
        n = int(math.ceil(w / ds) * math.ceil(h / ds))
        raise GlomkitError(
            f"{self.path}: reading a {int(w)}x{int(h)} px box needs {n:,} pixels from the coarsest level, "
            f"more than the limit of {limit:,}; raise it with --max-pixels"
        )

    def _set_image(self, img: np.ndarray, fmt: str) -> None:
        """A single-level slide over an RGB(A) uint8 array held in memory."""
        self._image = np.ascontiguousarray(img[:, :, :3])
        self.format = fmt
        self.height, self.width = self._image.shape[:2]
        self.level_dimensions = [(self.width, self.height)]
        self.level_downsamples = [1.0]
        self.bounds = (0, 0, self.width, self.height)

    def _find_mpp(self) -> float | None:
        if self._osr is not None:
            v = self._osr.properties.get("openslide.mpp-x")
            try:
                f = float(v) if v is not None else None
            except ValueError:
                f = None
            if f and f > 0:
                return f
        if self.path.suffix.lower() in {".tif", ".tiff", ".svs"}:
            return _tiff_mpp(self.path)
        return None

    def close(self) -> None:
        if self._osr is not None:
            self._osr.close()
            self._osr = None
        self._image = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    # -- reading -------------------------------------------------------------------------
    def best_level(self, downsample: float) -> int:
        """The level with the largest downsample not above ``downsample`` (level 0 at worst)."""
        best = 0
        for i, d in enumerate(self.level_downsamples):
            if d <= downsample * 1.001:
                best = i
        return best

    def level_for_mpp(self, mpp: float) -> int:
        """The coarsest level at least as fine as ``mpp`` µm/px (level 0 when none is coarser)."""
        return self.best_level(mpp / self.mpp)

    def patch_level(self, w: float, out_w: int, patch_mpp: float | None) -> int:
        """The level a patch is read from: a level-0 box ``w`` px wide becomes ``out_w`` px.

        The patch's target resolution is the coarser of its output resolution (``w / out_w``
        level-0 px per px) and ``patch_mpp``, the finest resolution the models use (µm/px; the
        bundled models see glomeruli at about 1 µm/px). The level is the coarsest one at least as
        fine as that target. ``patch_mpp`` None: level 0 (every patch decoded at full resolution).
        """
        if patch_mpp is None:
            return 0
        target = max(w * self.mpp / max(out_w, 1), float(patch_mpp))
        return self.level_for_mpp(target)

    def read_patch(
        self, x: float, y: float, w: float, h: float, out_w: int, out_h: int, patch_mpp: float | None
    ) -> np.ndarray:
        """The level-0 box (x, y, w, h) as an (out_h, out_w) patch, read from :meth:`patch_level`
        and resized (the pipeline's glomerulus patches)."""
        return self.read_region_scaled(x, y, w, h, out_w, out_h, level=self.patch_level(w, out_w, patch_mpp))

    def read_level(self, x: int, y: int, w: int, h: int, level: int = 0) -> np.ndarray:
        """RGB uint8 (h, w, 3) at ``level``; (x, y) in level-0 px; outside the image is white."""
        w, h = int(w), int(h)
        if w <= 0 or h <= 0:
            return np.zeros((max(h, 0), max(w, 0), 3), np.uint8)
        if self._osr is not None:
            try:
                rgba = np.asarray(self._osr.read_region((int(x), int(y)), level, (w, h)))
            except Exception as exc:  # noqa: BLE001
                raise GlomkitError(f"{self.path}: read failed at ({x}, {y}) ({_first_line(exc)})") from None
            return _rgba_to_rgb_white(rgba)
        assert self._image is not None and level == 0
        out = np.full((h, w, 3), 255, np.uint8)
        x0, y0 = max(int(x), 0), max(int(y), 0)
        x1, y1 = min(int(x) + w, self.width), min(int(y) + h, self.height)
        if x1 > x0 and y1 > y0:
            out[y0 - int(y) : y1 - int(y), x0 - int(x) : x1 - int(x)] = self._image[y0:y1, x0:x1]
        return out

    def read_region_scaled(
        self, x: float, y: float, w: float, h: float, out_w: int, out_h: int, level: int | None = None
    ) -> np.ndarray:
        """The level-0 box (x, y, w, h) resampled to (out_h, out_w): the best level (or ``level``),
        then resize.

        Where the level is much finer than asked (a slide with no pyramid), the box is read
        in strips and each strip reduced at once, so memory stays bounded.
        """
        ds = min(w / out_w, h / out_h)
        if level is None:
            level = self.best_level(ds)
        elif not 0 <= level < self.level_count:
            raise GlomkitError(f"{self.path}: no level {level} (the slide has {self.level_count})")
        if self._osr is not None:  # never decode more than the pixel limit in one read
            level = self.fitting_level(level, w, h)
        lds = self.level_downsamples[level]
        lw, lh = max(1, int(math.ceil(w / lds))), max(1, int(math.ceil(h / lds)))
        interp = cv2.INTER_AREA if ds / lds > 1 else cv2.INTER_LINEAR
        if lh * lw <= STRIP_PX * STRIP_PX * 2 or ds / lds < 2:
            region = self.read_level(int(round(x)), int(round(y)), lw, lh, level)
            if region.shape[1] == out_w and region.shape[0] == out_h:
                return region
            return cv2.resize(region, (out_w, out_h), interpolation=interp)
        # Strip-wise reduction: STRIP_PX rows of level px (fewer for a very wide box: at most
        # STRIP_MAX_PX per strip), each resized to its share of output rows.
        out = np.empty((out_h, out_w, 3), np.uint8)
        rows_done = 0
        step = max(1, min(STRIP_PX, STRIP_MAX_PX // lw))
        for sy in range(0, lh, step):
            sh = min(step, lh - sy)
            o0 = int(round(sy * out_h / lh))
            o1 = int(round((sy + sh) * out_h / lh)) if sy + sh < lh else out_h
            if o1 <= o0:
                continue
            strip = self.read_level(int(round(x)), int(round(y + sy * lds)), lw, sh, level)
            out[o0:o1] = cv2.resize(strip, (out_w, o1 - o0), interpolation=interp)
            rows_done = o1
        if rows_done < out_h:
            out[rows_done:] = 255
        return out

    def read_region_at_mpp(self, x: float, y: float, w: float, h: float, mpp: float) -> np.ndarray:
        """The level-0 box (x, y, w, h) at ``mpp`` µm/px: output size = box size x slide mpp / mpp."""
        f = self.mpp / mpp
        return self.read_region_scaled(x, y, w, h, max(1, int(round(w * f))), max(1, int(round(h * f))))

    def thumbnail(self, max_size: int = 2048) -> tuple[np.ndarray, float]:
        """A thumbnail of the bounds region whose longer side is at most ``max_size``.

        Returns (RGB image, level-0 px per thumbnail px). The thumbnail's (0, 0) is the
        bounds origin ``self.bounds[:2]``.
        """
        bx, by, bw, bh = self.bounds
        ds = max(bw / max_size, bh / max_size, 1.0)
        tw, th = max(1, int(round(bw / ds))), max(1, int(round(bh / ds)))
        # the pyramid level that fits the pixel limit (a coarser one than best_level when needed)
        level = self.fitting_level(self.best_level(ds), bw, bh) if self._osr is not None else 0
        return self.read_region_scaled(bx, by, bw, bh, tw, th, level=level), bw / tw


def slide_bounds(props, width: int, height: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the non-empty region, level-0 px, from OpenSlide properties (the whole
    level 0 when the format records no bounds)."""

    def get(key: str, default: int) -> int:
        v = props.get(key)
        try:
            return default if v in (None, "") else int(v)
        except ValueError:
            return default

    return (
        get("openslide.bounds-x", 0),
        get("openslide.bounds-y", 0),
        get("openslide.bounds-width", width),
        get("openslide.bounds-height", height),
    )


def _rgba_to_rgb_white(rgba: np.ndarray) -> np.ndarray:
    """Composite OpenSlide's premultiplied RGBA onto white."""
    rgb = rgba[:, :, :3]
    a = rgba[:, :, 3]
    if a.min() == 255:
        return np.ascontiguousarray(rgb)
    out = rgb.astype(np.uint16) + (255 - a[:, :, None]).astype(np.uint16)
    return np.minimum(out, 255).astype(np.uint8)


def _first_line(exc: BaseException) -> str:
    s = str(exc).strip()
    return s.splitlines()[0] if s else type(exc).__name__
