"""The validation split: as the imported dataset gives it, else decided once from the content hash; never reshuffled."""

import hashlib

from labeling.imports.labels import echo
from models.imagecheck import ImageRejected, RejectReason

# Other tools' split names → Loupe's two. A test split is held out like valid: never trained on.
SPLIT_NAMES = {
    "train": "train",
    "validation": "valid",
    "valid": "valid",
    "val": "valid",
    "dev": "valid",
    "test": "valid",
}


def assign_split(digest: str, *, seed: int, valid_pct: float) -> str:
    """'valid' for about valid_pct of hashes, else 'train'; the same answer every time."""
    bucket = int(hashlib.sha256(f"{seed}:{digest}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "valid" if bucket < valid_pct else "train"


def split_from_name(name: str) -> str:
    """Loupe's split ('train' or 'valid') for a split name another tool wrote, or ImageRejected(bad_split)."""
    split = SPLIT_NAMES.get(name.strip().lower())
    if split is None:
        known = ", ".join(SPLIT_NAMES)
        raise ImageRejected(RejectReason.BAD_SPLIT, f"the split {echo(name)} is not one Loupe knows ({known})")
    return split
