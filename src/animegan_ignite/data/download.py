"""Getting the data set where it is not mounted: ``--download kaggle`` (the Anime Face Dataset
through ``kagglehub``) or ``--download hf:NAME`` (a Hugging Face image data set through
``datasets``), each an optional extra. The result is a folder of images for ``--data-dir``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import UserError

KAGGLE_DATASET = "splcher/animefacedataset"
DONE_MARKER = ".complete"


class DownloadError(UserError):
    """The data set could not be fetched; the message says why and what to do instead."""


def _require(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise DownloadError(f"--download {extra} needs the {module} package: pip install "
                            f"'animegan-ignite[{extra}]' (or download the images yourself and "
                            "pass --data-dir)")


def fetch(spec: str, cache: Path) -> Path:
    """Fetch the data set named by ``spec`` (``kaggle`` or ``hf:NAME``) into ``cache``; return
    its folder."""
    if spec == "kaggle":
        return _fetch_kaggle()
    if spec.startswith("hf:") and len(spec) > 3:
        return _fetch_hf(spec[3:], cache / "datasets" / spec[3:].replace("/", "__"))
    raise DownloadError(f"--download {spec}: expected 'kaggle' or 'hf:NAME'")


def _fetch_kaggle() -> Path:
    _require("kagglehub", "kaggle")
    import kagglehub

    try:
        return Path(kagglehub.dataset_download(KAGGLE_DATASET))
    except Exception as e:  # offline, no credentials, rate limits: kagglehub raises many types
        raise DownloadError(f"--download kaggle: could not fetch {KAGGLE_DATASET} "
                            f"({type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}); "
                            "download it by hand and pass --data-dir") from e


def _fetch_hf(name: str, folder: Path) -> Path:
    if (folder / DONE_MARKER).exists():
        return folder
    _require("datasets", "hf")
    import datasets

    try:
        split = datasets.load_dataset(name, split="train")
    except Exception as e:  # offline, unknown name, gated data set
        raise DownloadError(f"--download hf:{name}: could not load it ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:100] if str(e) else ''}); "
                            "download the images yourself and pass --data-dir") from e
    return export_image_split(split, folder)


def export_image_split(split, folder: Path) -> Path:
    """Write the image column of a ``datasets`` split as PNG files into ``folder/images``, which
    then trains like any image folder. A marker file makes a finished export reusable."""
    image_columns = [n for n, f in split.features.items() if type(f).__name__ == "Image"]
    if not image_columns:
        raise DownloadError(f"the data set has no image column (columns: {list(split.features)})")
    out = Path(folder) / "images"
    out.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(split):
        row[image_columns[0]].convert("RGB").save(out / f"{i:06d}.png")
    (Path(folder) / DONE_MARKER).write_text(f"{len(split)} images\n")
    return Path(folder)
