"""Image → model input, exactly as fastai's validation pipeline does it (centre crop, resize, normalize)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

EXIF_ORIENTATION = 0x0112


def centre_square_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The largest centred square, as fastai's Resize(method='crop') takes on validation."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def prepare(image: Image.Image, size: int, mean, std) -> np.ndarray:
    """A (3, size, size) float32 array: RGB, centre-cropped, resized bilinearly, normalized."""
    if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    image = image.resize((size, size), Image.BILINEAR, box=centre_square_box(*image.size))
    scale = 1 / (255.0 * np.asarray(std, dtype=np.float32))
    offset = -np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)
    array = np.asarray(image, dtype=np.float32) * scale + offset
    return np.ascontiguousarray(array.transpose(2, 0, 1))
