"""The validation split: decided once per image from its content hash, never reshuffled."""

import hashlib


def assign_split(digest: str, *, seed: int, valid_pct: float) -> str:
    """'valid' for about valid_pct of hashes, else 'train'; the same answer every time."""
    bucket = int(hashlib.sha256(f"{seed}:{digest}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "valid" if bucket < valid_pct else "train"
