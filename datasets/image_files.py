"""Image files as the sample pipeline reads them: the file's bytes read once, its size taken from the JPEG or PNG
header in those bytes (no PIL object is built on the common path), then decoded by torchvision, or by PIL at reduced
size (JPEG DCT scaling) when the inputs allow it. Any other format, or a header this parser does not know, goes
through PIL, which also names what is wrong with a corrupt file.

Every reader of images (datasets, depth maps, Gaze360 frames, predict.py) turns pixels into 8-bit RGB here, one way:
8-bit modes as PIL converts them; 16-bit images (PNG, TIFF; greyscale or colour) by their high byte, as PIL reads
16-bit colour PNGs (a 16-bit greyscale image would otherwise saturate to almost white); 32-bit integer and float
images, whose range no file states, are refused. A header declaring more pixels than PIL's decompression-bomb limit
(2 x PIL.Image.MAX_IMAGE_PIXELS) is refused before anything is decoded. EXIF orientation is applied only where asked
(`rgb_image(..., orientation=True)`: predict.py); the datasets read images as stored, as their reference loaders and
annotations do (docs/trust.md, "Images").
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
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


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
EXIF_ORIENTATION = 0x0112  # the EXIF tag of the camera's orientation (1 = as stored)


def pixel_limit() -> int | None:
    """The most pixels an image may declare: PIL's decompression-bomb error limit, 2 x Image.MAX_IMAGE_PIXELS (None
    when a user has switched PIL's check off)."""
    return None if Image.MAX_IMAGE_PIXELS is None else 2 * int(Image.MAX_IMAGE_PIXELS)


def too_many_pixels(size: tuple[int, int]) -> str | None:
    """What is wrong with an image header declaring `size` (width, height) beyond `pixel_limit`, else None."""
    limit = pixel_limit()
    width, height = size
    if limit is None or width * height <= limit:
        return None
    return (f"declares {width} x {height} pixels ({width * height / 1e6:,.0f} megapixels), more than the "
            f"decompression-bomb limit of {limit / 1e6:,.0f} megapixels: a corrupt or doctored header, or an image "
            "far larger than gaze following needs (raise PIL.Image.MAX_IMAGE_PIXELS if it is genuine)")


def unsupported_mode(image: Image.Image) -> str | None:
    """Why the pixels of an opened image cannot be read as 8-bit RGB (32-bit integer or float values have no fixed
    range), else None. Only the header is needed."""
    if image.mode == "F" or (image.mode.startswith("I") and image.mode not in SIXTEEN_BIT_MODES
                             and not (image.mode == "I" and image.format == "PNG")):
        kind = "floating-point" if image.mode == "F" else "32-bit integer"
        return (f"is a {kind} image (PIL mode {image.mode}), whose value range no file states, so it cannot be read "
                "as 8-bit RGB; save it with 8 or 16 bits per channel")
    return None


def eight_bit(image: Image.Image, path: Path | str, what: str) -> Image.Image:
    """`image` in a mode PIL converts to RGB or L without losing its range: 16-bit greyscale (modes I;16*, and the I
    of a PNG, which holds at most 16 bits) scaled to 8 bits by the high byte of each value (what PIL does to 16-bit
    colour PNGs and torchvision's uint16 pixels get in `decode`); 8-bit modes unchanged. A 32-bit integer or float
    image is a DataError (`unsupported_mode`)."""
    problem = unsupported_mode(image)
    if problem is not None:
        raise DataError(f"{path}: {what} {problem}")
    if image.mode in SIXTEEN_BIT_MODES or image.mode == "I":
        return Image.fromarray((np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8), mode="L")
    return image


def rgb_image(image: Image.Image, path: Path | str, what: str, orientation: bool = False) -> Image.Image:
    """The pixels of an opened image as 8-bit RGB (`eight_bit`), turned upright by its EXIF orientation when
    `orientation` (a photo taken with the phone on its side is stored sideways and displayed upright)."""
    image = eight_bit(image, path, what)
    if orientation and image.getexif().get(EXIF_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    return image.convert("RGB")


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
    except Image.DecompressionBombError as error:  # PIL refuses a header declaring too many pixels
        raise DataError(f"{path}: {what} is refused as a possible decompression bomb ({error}); raise "
                        "PIL.Image.MAX_IMAGE_PIXELS if it is genuine") from None
    except (OSError, SyntaxError) as error:  # PIL: "cannot identify image file", ...
        raise cannot_decode(path, what, error) from None


def read_image_file(path: Path, what: str) -> ImageFile:
    """Read an image file and its size (errors as `open_image`'s)."""
    _require_file(path, what)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:  # no permission, an I/O error (e.g. a network file system gone)
        raise DataError(f"{path}: {what} cannot be read ({error.strerror or error})") from None
    header = header_size(data)
    if header is not None:
        problem = too_many_pixels(header[1])  # checked before torchvision allocates the declared pixels
        if problem is not None:
            raise DataError(f"{path}: {what} {problem}")
        return ImageFile(path, data, *header)
    with open_image(path, what, data) as opened:
        problem = unsupported_mode(opened)
        if problem is not None:
            raise DataError(f"{path}: {what} {problem}")
        return ImageFile(path, data, opened.format, opened.size)


def decode(image: ImageFile, reduction: int, what: str) -> tuple[torch.Tensor, float]:
    """Decode as uint8 RGB [3, H, W] (channels-last in memory, as the resize wants it). A JPEG with reduction > 1 is
    decoded by PIL at 1/2, 1/4 or 1/8 of its size (libjpeg's DCT scaling: far cheaper than decoding every pixel and
    resizing them away); other JPEGs and PNGs by torchvision's decoder, 1.25-1.6x faster than PIL's (BENCHMARKS.md,
    "Sample pipeline") with the same pixels, falling back to PIL for what it cannot decode. Returns the pixels and
    their scale to the full size. A corrupt (e.g. truncated) file is an error naming it and `what`. 16-bit pixels
    are scaled to 8 bits (`eight_bit`)."""
    if image.format in TORCHVISION_FORMATS and not (reduction > 1 and image.format == "JPEG"):
        try:
            pixels = decode_image(torch.from_numpy(image.data), mode=ImageReadMode.RGB)
        except RuntimeError:  # a file torchvision cannot decode: PIL decodes it or says what is wrong
            pass
        else:
            if pixels.dtype == torch.uint16:  # a 16-bit PNG: its high bytes, as PIL reads 16-bit colour PNGs
                pixels = (pixels.to(torch.int32) >> 8).to(torch.uint8)
            return pixels, 1.0
    try:
        with open_image(image.path, what, image.data) as opened:
            scale = 1.0
            if reduction > 1 and opened.format == "JPEG":
                width, height = opened.size
                drafted = opened.draft("RGB", (width // reduction, height // reduction))
                if drafted is not None:
                    scale = drafted[1][2] / width
            return torch.from_numpy(np.array(rgb_image(opened, image.path, what))).permute(2, 0, 1), scale
    except (OSError, SyntaxError) as error:  # PIL: "image file is truncated", ...
        raise cannot_decode(image.path, what, error) from None
