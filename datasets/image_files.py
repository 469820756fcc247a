"""Image files as the sample pipeline reads them: the file's bytes read once, its size taken from the JPEG or PNG
header in those bytes (no PIL object is built on the common path), then decoded by torchvision, or by PIL at reduced
size (JPEG DCT scaling) when the inputs allow it. Any other format, or a header this parser does not know, goes
through PIL, which also names what is wrong with a corrupt file.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

from datasets.errors import DataError, MissingDataFile

TORCHVISION_FORMATS = ("JPEG", "PNG")  # decoded by torchvision.io (the same pixels as PIL, faster)
# torchvision 0.29 deprecates its decoders in favour of TorchCodec; this project pins 0.29 and measured them faster.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision are deprecated",
                        category=DeprecationWarning)

# JPEG frame headers (SOF0-SOF15 except DHT C4, JPG C8 and DAC CC) hold the image's height and width.
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD9)])  # TEM, RST0-7, SOI: no length field
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ImageFile:
    """One image file read into memory: `data` (its bytes), `format` ("JPEG", "PNG", or PIL's name for anything
    else) and `size` (width, height) as PIL reports them."""

    path: Path
    data: np.ndarray
    format: str
    size: tuple[int, int]


def header_size(data: np.ndarray | bytes) -> tuple[str, tuple[int, int]] | None:
    """(format, (width, height)) of a baseline/progressive JPEG or a PNG from its header bytes; None for anything
    else (another format, or a header this small parser does not follow: PIL then reads it)."""
    view = memoryview(data)
    if bytes(view[:8]) == _PNG_SIGNATURE and bytes(view[12:16]) == b"IHDR":
        width, height = int.from_bytes(view[16:20], "big"), int.from_bytes(view[20:24], "big")
        return ("PNG", (width, height)) if width and height else None
    if bytes(view[:2]) != b"\xff\xd8":
        return None
    position, end = 2, len(view)
    while position + 4 <= end:
        if view[position] != 0xFF:
            return None  # not a marker where one must be: let PIL judge the file
        marker = view[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker in _JPEG_STANDALONE_MARKERS:
            position += 2
        elif marker in _JPEG_FRAME_MARKERS:
            if position + 9 > end:
                return None
            height = int.from_bytes(view[position + 5 : position + 7], "big")
            width = int.from_bytes(view[position + 7 : position + 9], "big")
            return ("JPEG", (width, height)) if width and height else None
        elif marker == 0xDA:  # image data before any frame header
            return None
        else:
            position += 2 + int.from_bytes(view[position + 2 : position + 4], "big")
    return None


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise MissingDataFile(f"{path}: {what} does not exist")


def cannot_decode(path: Path | str, what: str, error: Exception) -> DataError:
    return DataError(f"{path}: {what} cannot be decoded ({error})")


def open_image(path: Path, what: str, data: np.ndarray | None = None) -> Image.Image:
    """Open an image file with PIL, lazily (only its header is read; use it in a `with` block), from `data` (its
    bytes) when given; a missing file, or one that is not an image, is an error naming it and `what` (the
    annotation it belongs to)."""
    if data is None:
        _require_file(path, what)
    try:
        return Image.open(path if data is None else io.BytesIO(data.tobytes()))
    except (OSError, SyntaxError) as error:  # PIL: "cannot identify image file", ...
        raise cannot_decode(path, what, error) from None


def read_image_file(path: Path, what: str) -> ImageFile:
    """Read an image file and its size (errors as `open_image`'s)."""
    _require_file(path, what)
    data = np.fromfile(path, dtype=np.uint8)
    header = header_size(data)
    if header is not None:
        return ImageFile(path, data, *header)
    with open_image(path, what, data) as opened:
        return ImageFile(path, data, opened.format, opened.size)


def decode(image: ImageFile, reduction: int, what: str) -> tuple[torch.Tensor, float]:
    """Decode as uint8 RGB [3, H, W] (channels-last in memory, as the resize wants it). A JPEG with reduction > 1 is
    decoded by PIL at 1/2, 1/4 or 1/8 of its size (libjpeg's DCT scaling: far cheaper than decoding every pixel and
    resizing them away); other JPEGs and PNGs by torchvision's decoder, 1.25-1.6x faster than PIL's (BENCHMARKS.md,
    "Sample pipeline") with the same pixels, falling back to PIL for what it cannot decode. Returns the pixels and
    their scale to the full size. A corrupt (e.g. truncated) file is an error naming it and `what`."""
    if image.format in TORCHVISION_FORMATS and not (reduction > 1 and image.format == "JPEG"):
        try:
            return decode_image(torch.from_numpy(image.data), mode=ImageReadMode.RGB), 1.0
        except RuntimeError:  # a file torchvision cannot decode: PIL decodes it or says what is wrong
            pass
    try:
        with open_image(image.path, what, image.data) as opened:
            scale = 1.0
            if reduction > 1 and opened.format == "JPEG":
                width, height = opened.size
                drafted = opened.draft("RGB", (width // reduction, height // reduction))
                if drafted is not None:
                    scale = drafted[1][2] / width
            return torch.from_numpy(np.array(opened.convert("RGB"))).permute(2, 0, 1), scale
    except (OSError, SyntaxError) as error:  # PIL: "image file is truncated", ...
        raise cannot_decode(image.path, what, error) from None
