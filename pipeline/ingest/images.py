"""Decode, check, convert and bound untrusted images.

Every image leaves as an RGB JPEG or PNG within `max_side` and `max_area`, with its sha256 and size, or
as a `RowError` that says why it was rejected. Paths may not leave their source root. An image that is
already a fully decodable RGB JPEG/PNG within the limits and without EXIF keeps its bytes: re-encoding
MATH-V's JPEG diagrams as PNG tripled their size and took 85% of the source's ingest time. A resized
JPEG stays a JPEG (PNG-encoding a scanned figure costs ~5x the time for no fidelity it still has).
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from pipeline.config_base import StrictConfig
from pipeline.errors import RowError

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a half-grey image


_KEPT_FORMATS = ("JPEG", "PNG")


class ImageLimits(StrictConfig):
    # After resizing. Vision-language processors budget pixels, so the area is the main bound; a side
    # bound alone shrank MATH-V's tall composites (465 x 2915: five option panels) to illegible strips.
    max_side: int = 4096
    max_area: int = 1024 * 1024
    max_pixels: int = 40_000_000  # decompression-bomb guard, checked from the header before decoding
    max_file_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True)
class NormalisedImage:
    bytes: bytes
    path: str
    sha256: str
    width: int
    height: int

    def as_row(self) -> dict:
        return {"bytes": self.bytes, "path": self.path, "sha256": self.sha256, "width": self.width, "height": self.height}


def resolve_inside(root: Path, relative: str) -> Path:
    """The file `relative` names under `root`; refuses absolute paths and `..` escapes."""
    if not relative or Path(relative).is_absolute():
        raise RowError("unsafe_image_path", f"absolute or empty image path {relative!r}")
    root = root.resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root):
        raise RowError("unsafe_image_path", f"image path {relative!r} escapes {root}")
    return candidate


def read_image_file(root: Path, relative: str, limits: ImageLimits) -> bytes:
    path = resolve_inside(root, relative)
    if not path.is_file():
        raise RowError("image_missing", f"no image file at {relative!r}")
    if path.stat().st_size > limits.max_file_bytes:
        raise RowError("image_too_large", f"{path.stat().st_size} bytes > {limits.max_file_bytes}")
    return path.read_bytes()


def _to_rgb(image: Image.Image) -> Image.Image:
    """One colour model for every image: alpha composited on white, 16-bit scaled to 8-bit."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() if array.size and array.max() > 0 else 1.0
        image = Image.fromarray((array * (255.0 / peak)).clip(0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def normalise_image(data: bytes, *, path: str, limits: ImageLimits) -> NormalisedImage:
    if len(data) > limits.max_file_bytes:
        raise RowError("image_too_large", f"{len(data)} bytes > {limits.max_file_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
                if width * height > limits.max_pixels:
                    raise RowError("image_too_many_pixels", f"{width}x{height} > {limits.max_pixels} pixels")
                scale = min(1.0, limits.max_side / max(width, height), (limits.max_area / (width * height)) ** 0.5)
                source_format = probe.format
                if scale <= 0.5 and source_format == "JPEG":
                    # The decoder's own 1/2, 1/4, 1/8 scaling (never below the target): a scan of
                    # several megapixels decodes and resizes ~4x faster, the stream is still read whole.
                    probe.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
                probe.load()  # full decode: catches truncation and corrupt streams
                keep_bytes = scale == 1.0 and source_format in _KEPT_FORMATS and probe.mode == "RGB" and "exif" not in probe.info
                image = None if keep_bytes else _to_rgb(probe)
    except RowError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise RowError("image_decompression_bomb", str(error)) from None
    except Exception as error:  # PIL raises many types for corrupt data; all mean "undecodable"
        raise RowError("image_undecodable", f"{type(error).__name__}: {error}") from None
    if image is None:  # kept as it came
        encoded = data
    else:
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            # Area averaging (BOX): each pixel the mean of those it covers, no ringing around a diagram's
            # lines, and 3x faster than LANCZOS on MATH-V's 1-2 MP figures (40 -> 13 ms each, ~12% of them).
            image = image.resize(size, Image.Resampling.BOX)
        width, height = image.size
        buffer = io.BytesIO()
        if source_format == "JPEG":
            image.save(buffer, format="JPEG", quality=95)
        else:
            image.save(buffer, format="PNG")
        encoded = buffer.getvalue()
    return NormalisedImage(
        bytes=encoded,
        path=path,
        sha256=hashlib.sha256(encoded).hexdigest(),
        width=width,
        height=height,
    )
