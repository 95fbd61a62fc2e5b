"""The image store: files named by their content hash under the data directory."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

from PIL import Image, ImageOps


def content_hash(data: bytes) -> str:
    """The SHA-256 hex digest that names an image everywhere in Loupe."""
    return hashlib.sha256(data).hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


EXPORTS_FOLDER = "exports"  # zips the Admin tab's export writes, for download


class ImageStore:
    """Originals under images/ab/<hash>.<ext>, thumbnails under thumbs/ab/<hash>.jpg."""

    def __init__(self, data_dir: Path, thumbnail_px: int = 160):
        self.data_dir = Path(data_dir)
        self.thumbnail_px = thumbnail_px

    def original_relpath(self, digest: str, extension: str) -> str:
        """Where an original lives, relative to the data directory."""
        return f"images/{digest[:2]}/{digest}.{extension}"

    def thumb_relpath(self, digest: str) -> str:
        """Where a thumbnail lives, relative to the data directory."""
        return f"thumbs/{digest[:2]}/{digest}.jpg"

    def served_folders(self) -> list[str]:
        """The folders the review pages may hand to a browser: originals, thumbnails and exports (not the database)."""
        return [str((self.data_dir / name).resolve()) for name in ("images", "thumbs", EXPORTS_FOLDER)]

    def absolute(self, relpath: str) -> Path:
        """The file behind a stored relative path."""
        return self.data_dir / relpath

    def save(self, digest: str, extension: str, data: bytes) -> tuple[str, str]:
        """Store the original and its thumbnail once; returns both relative paths."""
        original = self.original_relpath(digest, extension)
        thumb = self.thumb_relpath(digest)
        if not self.absolute(original).exists():
            _write_atomically(self.absolute(original), data)
        if not self.absolute(thumb).exists():
            _write_atomically(self.absolute(thumb), self._thumbnail_bytes(data))
        return original, thumb

    def _thumbnail_bytes(self, data: bytes) -> bytes:
        with Image.open(io.BytesIO(data)) as image:
            image = ImageOps.exif_transpose(image)
            image.thumbnail((self.thumbnail_px, self.thumbnail_px))
            # Small images (the demo digits) are scaled up so a thumbnail is legible.
            if max(image.size) < self.thumbnail_px // 2:
                scale = (self.thumbnail_px // 2) // max(image.size)
                image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "JPEG", quality=85)
            return buffer.getvalue()
