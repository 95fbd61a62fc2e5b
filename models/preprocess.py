"""Image → model input, exactly as fastai's validation pipeline does it (centre crop, resize, normalize)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps


def centre_square(image: Image.Image) -> Image.Image:
    """The largest centred square, as fastai's Resize(method='crop') takes on validation."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def prepare(image: Image.Image, size: int, mean, std) -> np.ndarray:
    """A (3, size, size) float32 array: RGB, centre-cropped, resized bilinearly, normalized."""
    image = ImageOps.exif_transpose(image).convert("RGB")
    image = centre_square(image).resize((size, size), Image.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))
