"""Places a command reads from or writes to, checked before any work starts (no torch here)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError

# The image formats the project reads (data sets) and writes (grids): PIL handles them all.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def cache_folder(given: str | Path | None) -> Path:
    """Where the caches live: ``given`` (``--cache-dir``), else ``$ANIMEGAN_CACHE``, else
    ``$XDG_CACHE_HOME/animegan-ignite``, else ``~/.cache/animegan-ignite``."""
    if given:
        return Path(given)
    if "ANIMEGAN_CACHE" in os.environ:
        return Path(os.environ["ANIMEGAN_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "animegan-ignite"


def check_output_path(path: str | Path, flag: str, folder: bool = False,
                      extensions: tuple[str, ...] | None = None) -> Path:
    """A place a command may write: not under a file, in a writable folder, with a file name
    that says its format. Raises :class:`UserError` before anything is written."""
    path = Path(path)
    if extensions and path.suffix.lower() not in extensions:
        raise UserError(f"{flag} {path}: the file name must end in {' or '.join(extensions)}, "
                        "which says the format to write")
    if path.exists() and path.is_dir() != folder:
        raise UserError(f"{flag} {path}: is a {'file' if folder else 'folder'}, not a "
                        f"{'folder' if folder else 'file'}")
    for place in ([path] if folder else []) + list(path.absolute().parents):
        if place.exists():
            if not place.is_dir():
                raise UserError(f"{flag} {path}: {place} is a file, so nothing can be written "
                                "below it; choose another path")
            if not os.access(place, os.W_OK | os.X_OK):
                raise UserError(f"{flag} {path}: {place} is not writable (read-only or no "
                                "permission); choose another path")
            break
    return path
