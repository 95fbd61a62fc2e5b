"""Which file-system paths commands may read from or write to (LOUPE_ALLOWED_ROOTS)."""

from __future__ import annotations

from pathlib import Path

from errors import LoupeError


class PathNotAllowed(LoupeError, ValueError):
    """A path outside the allowed roots, once `..` and symbolic links are resolved."""


def require_inside(path: Path, roots: tuple[Path, ...]) -> Path:
    """path resolved (symlinks followed, `..` removed) if it lies inside one of roots; no roots: any path."""
    resolved = Path(path).resolve()
    if not roots:
        return resolved
    for root in roots:
        if resolved.is_relative_to(Path(root).resolve()):
            return resolved
    allowed = ", ".join(str(root) for root in roots)
    raise PathNotAllowed(f"{path} resolves to {resolved}, outside the allowed roots ({allowed})")
