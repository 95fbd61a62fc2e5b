"""Decode-verify image bytes before anything is stored: what passes is a real, sane image."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from enum import StrEnum

from PIL import Image, UnidentifiedImageError

from errors import LoupeError

ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp"}


class RejectReason(StrEnum):
    """Why an item was refused; stored in import_rejections.reason."""

    EMPTY = "empty"
    TOO_LARGE = "too_large"
    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TRUNCATED = "truncated"
    TOO_MANY_PIXELS = "too_many_pixels"
    UNSAFE_PATH = "unsafe_path"
    UNSAFE_URL = "unsafe_url"
    UNKNOWN_LABEL = "bad_label"
    DOWNLOAD_FAILED = "download_failed"
    MISSING_FILE = "missing_file"  # a dataset file names an image that is not there
    BAD_SPLIT = "bad_split"  # a dataset file gives a split Loupe does not know


class ImageRejected(LoupeError):
    """An item that is not imported (or predicted), with the reason and a sentence for people."""

    def __init__(self, reason: RejectReason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = 413 if reason in (RejectReason.TOO_LARGE, RejectReason.TOO_MANY_PIXELS) else 400

    @property
    def message(self) -> str:
        """The sentence with the reason's code, which scripts can match on."""
        return f"This image cannot be used ({self.reason.value}): {self.detail}"


@dataclass(frozen=True)
class CheckedImage:
    """Facts about an image that decoded completely."""

    format: str
    extension: str
    width: int
    height: int


def check_image_bytes(data: bytes, *, max_bytes: int, max_pixels: int) -> CheckedImage:
    """Decode the whole image or raise ImageRejected saying why it is refused."""
    image = decode_checked(data, max_bytes=max_bytes, max_pixels=max_pixels)
    return CheckedImage(image.format, ALLOWED_FORMATS[image.format], image.width, image.height)


def decode_checked(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """The fully decoded image, or ImageRejected saying why it is refused."""
    if not data:
        raise ImageRejected(RejectReason.EMPTY, "the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageRejected(RejectReason.TOO_LARGE, f"the file is {len(data):,} bytes; the limit is {max_bytes:,}")
    try:
        # Pillow's own bomb check is replaced by ours, which compares against the setting.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image_format = image.format
            width, height = image.size
    except Image.DecompressionBombError as error:
        raise ImageRejected(RejectReason.TOO_MANY_PIXELS, f"decompression bomb refused: {error}") from None
    except UnidentifiedImageError:
        raise ImageRejected(RejectReason.NOT_AN_IMAGE, "the content is not a recognised image") from None
    except Exception as error:  # Pillow raises many types for garbage headers
        raise ImageRejected(RejectReason.NOT_AN_IMAGE, f"the image header is unreadable: {error}") from None
    if image_format not in ALLOWED_FORMATS:
        raise ImageRejected(
            RejectReason.UNSUPPORTED_FORMAT,
            f"{image_format} images are not accepted (allowed: {', '.join(ALLOWED_FORMATS)})",
        )
    if width * height > max_pixels:
        raise ImageRejected(
            RejectReason.TOO_MANY_PIXELS,
            f"{width}×{height} = {width * height:,} pixels; the limit is {max_pixels:,}",
        )
    if width < 1 or height < 1:
        raise ImageRejected(RejectReason.NOT_AN_IMAGE, f"the image has no pixels ({width}×{height})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except Exception as error:
        raise ImageRejected(RejectReason.TRUNCATED, f"the image does not decode completely: {error}") from None
    return image
