"""A built-in data set of procedurally drawn cartoon faces, for the no-download demo.

Each face is drawn from its own random stream seeded by ``(seed, index)``, so the data set is
deterministic, needs no storage, and can be read by several DataLoader workers at once. Faces
vary in face shape, skin tone, hair style and colour, eye colour, position and size. They are
drawn at 2x resolution and downsampled, which anti-aliases the edges.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset
from torchvision.transforms.functional import pil_to_tensor
from tqdm.auto import tqdm

from .cache import CachedImages

SKIN = [(255, 224, 196), (250, 208, 170), (234, 186, 150), (198, 144, 108), (141, 98, 72),
        (255, 236, 220)]
HAIR = [(30, 24, 24), (90, 56, 30), (200, 160, 90), (240, 220, 150), (220, 60, 60),
        (70, 110, 220), (240, 150, 190), (150, 90, 200), (230, 230, 235), (60, 160, 120)]
EYES = [(60, 120, 220), (40, 160, 90), (160, 60, 40), (120, 60, 170), (220, 150, 40),
        (200, 40, 80), (40, 40, 60)]

_SCALE = 2  # draw at 2x, then downsample


class SyntheticFaces(Dataset):
    """``size`` cartoon faces of ``image_size`` px, deterministic from ``seed``.

    Returns ``(image, 0)`` like :class:`torchvision.datasets.ImageFolder`, the image passed
    through ``transform`` when one is given.
    """

    def __init__(self, size: int, seed: int = 999, image_size: int = 64,
                 transform: Callable | None = None) -> None:
        self.size, self.seed, self.image_size, self.transform = size, seed, image_size, transform

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):
        if not 0 <= index < self.size:
            raise IndexError(index)
        img = draw_face(random.Random(f"{self.seed}:{index}"), self.image_size)
        return (self.transform(img) if self.transform else img), 0


class FreshFaces(Dataset):
    """Synthetic faces no run has seen, every epoch (``--synthetic-fresh``): a data set that
    never repeats, for experiments where D must not be able to memorise its data. Item ``i``
    is face ``start + i`` of the seed's endless stream; the sampler adds ``epoch x len`` to the
    indices (sampler.EpochSampler), so each epoch draws new faces. ``start`` past the regular
    set keeps them apart from the held-out faces."""

    def __init__(self, size: int, start: int, seed: int = 999, image_size: int = 64,
                 transform: Callable | None = None) -> None:
        self.size, self.start, self.seed = size, start, seed
        self.image_size, self.transform = image_size, transform

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):
        img = draw_face(random.Random(f"{self.seed}:{self.start + index}"), self.image_size)
        return (self.transform(img) if self.transform else img), 0


class DrawnFaces(CachedImages):
    """The same faces as :class:`SyntheticFaces`, each drawn once into a uint8 tensor in memory
    (the ``--cache`` path): DataLoader workers would otherwise redraw every face every epoch,
    milliseconds apiece, on the cores the training step needs. Batches are then gathered from the
    tensor with no workers (see ``data.make_train_loader``)."""

    def __init__(self, size: int, seed: int = 999, image_size: int = 64,
                 progress: bool = False) -> None:
        faces = SyntheticFaces(size, seed, image_size)
        images = torch.stack([pil_to_tensor(faces[i][0]) for i in tqdm(
            range(size), desc="drawing the demo faces", disable=not progress, leave=False)])
        super().__init__(images, files=[])
        self.size, self.seed = size, seed  # what features.dataset_identity keys the real features by


def draw_face(rng: random.Random, image_size: int = 64) -> Image.Image:
    """Draw one face with the random choices of ``rng``."""
    s = image_size * _SCALE
    bg = tuple(rng.randint(150, 250) for _ in range(3))
    img = Image.new("RGB", (s, s), bg)
    d = ImageDraw.Draw(img)
    hair, skin, eye = rng.choice(HAIR), rng.choice(SKIN), rng.choice(EYES)
    r = s * rng.uniform(0.24, 0.34)  # face radius: size varies
    cx = s / 2 + rng.uniform(-0.08, 0.08) * s
    cy = s / 2 + rng.uniform(-0.04, 0.1) * s
    w, h = r * rng.uniform(0.8, 1.05), r * rng.uniform(1.0, 1.25)  # round to long faces

    _hair_back(d, rng, cx, cy, w, h, hair)
    _face(d, rng, cx, cy, w, h, skin)
    _bangs(d, rng, cx, cy, w, h, hair)
    _eyes(d, rng, cx, cy, w, h, eye)
    _mouth(d, rng, cx, cy, w, h)
    return img.resize((image_size, image_size), Image.LANCZOS)


def _hair_back(d, rng, cx, cy, w, h, colour):
    length = rng.uniform(0.9, 2.2)  # short to long hair
    d.ellipse([cx - w * 1.25, cy - h * 1.2, cx + w * 1.25, cy + h * length], fill=colour)


def _face(d, rng, cx, cy, w, h, skin):
    chin = rng.uniform(0.0, 0.35)  # 0: round jaw, larger: pointed chin
    top = [cx - w, cy - h * 0.9, cx + w, cy + h * 0.7]
    d.ellipse(top, fill=skin)
    d.polygon([(cx - w * 0.93, cy + h * 0.1), (cx + w * 0.93, cy + h * 0.1),
               (cx, cy + h * (0.9 + chin))], fill=skin)
    d.ellipse([cx - w * 0.7, cy + h * 0.35 - h * 0.3, cx + w * 0.7, cy + h * 0.35 + h * 0.55],
              fill=skin)


def _bangs(d, rng, cx, cy, w, h, colour):
    d.chord([cx - w * 1.08, cy - h * 1.05, cx + w * 1.08, cy + h * 0.25], 180, 360, fill=colour)
    n = rng.randint(3, 6)
    for i in range(n):
        x0 = cx - w + 2 * w * i / n
        x1 = x0 + 2 * w / n
        tip = cy - h * rng.uniform(0.05, 0.4)
        d.polygon([(x0, cy - h * 0.45), (x1, cy - h * 0.45), ((x0 + x1) / 2, tip)], fill=colour)


def _eyes(d, rng, cx, cy, w, h, colour):
    ew, eh = w * rng.uniform(0.24, 0.34), h * rng.uniform(0.2, 0.3)
    gap, ey = w * rng.uniform(0.38, 0.5), cy + h * rng.uniform(-0.02, 0.12)
    for side in (-1, 1):
        x = cx + side * gap
        d.ellipse([x - ew, ey - eh, x + ew, ey + eh], fill=(255, 255, 255))
        d.ellipse([x - ew * 0.75, ey - eh * 0.9, x + ew * 0.75, ey + eh], fill=colour)
        d.ellipse([x - ew * 0.35, ey - eh * 0.4, x + ew * 0.35, ey + eh * 0.5], fill=(20, 20, 30))
        d.ellipse([x - ew * 0.55, ey - eh * 0.7, x - ew * 0.15, ey - eh * 0.25],
                  fill=(255, 255, 255))
        d.line([x - ew * 1.1, ey - eh * 1.05, x + ew * 1.1, ey - eh * 1.05], fill=(30, 20, 20),
               width=max(1, int(eh * 0.25)))


def _mouth(d, rng, cx, cy, w, h):
    my, mw = cy + h * rng.uniform(0.5, 0.62), w * rng.uniform(0.1, 0.22)
    if rng.random() < 0.5:
        d.arc([cx - mw, my - mw * 0.6, cx + mw, my + mw * 0.6], 20, 160, fill=(150, 40, 50),
              width=max(1, int(mw * 0.3)))
    else:
        d.ellipse([cx - mw * 0.5, my - mw * 0.3, cx + mw * 0.5, my + mw * 0.5],
                  fill=(200, 70, 80))
