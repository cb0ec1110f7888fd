"""DiffAugment (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training",
NeurIPS 2020): the same random, differentiable augmentation applied to real *and* generated
images before every call of D, in D's step and in G's. D never sees an un-augmented image, so
it cannot learn the augmentation as a tell, and G still gets gradients through it.

Policies, as in the paper's code, on images in [-1, 1], with one random draw per image:

- ``color``: brightness + U(-0.5, 0.5); saturation x U(0, 2) around the per-pixel channel mean;
  contrast x U(0.5, 1.5) around the image mean;
- ``translation``: a shift of up to 1/8 of the size in each direction, zero-filled;
- ``cutout``: a zeroed square of half the size, at a random position (partly outside allowed).

Every operation is a batched tensor expression on the images' device: no per-image Python loop.

Adaptive strength (Karras et al., 2020, "ADA"): with a probability ``p`` < 1 each operation is
applied to each image with probability ``p`` (a per-image mask, drawn on the device), and
:class:`AdaptiveAugment` moves ``p`` from D's overfitting signal: r_t = E[sign(D(x_real))], or
r_v, which also scores held-out faces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ignite.distributed as idist
import torch
import torch.nn.functional as F
from ignite.engine import Engine

from ..config import DIFFAUGMENT_POLICIES
from .gan import ADA_KEYS


def _uniform(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """One draw per image, shaped to broadcast over (C, H, W)."""
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) * (hi - lo) + lo


def color(x: torch.Tensor, chosen: torch.Tensor | None = None) -> torch.Tensor:
    if chosen is None:
        x = x + _uniform(x, -0.5, 0.5)
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * _uniform(x, 0.0, 2.0) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * _uniform(x, 0.5, 1.5) + mean
    # Unchosen images get identity parameters (shift 0, factors 1); written as x + change so
    # that they come out bit for bit unchanged, at the cost of the unmasked operation.
    m = chosen.view(-1, 1, 1, 1).to(x.dtype)
    x = x + _uniform(x, -0.5, 0.5) * m
    mean = x.mean(dim=1, keepdim=True)
    x = x + (x - mean) * ((_uniform(x, 0.0, 2.0) - 1) * m)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return x + (x - mean) * ((_uniform(x, 0.5, 1.5) - 1) * m)


def translate(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Image ``i`` moved down by ``dy[i]`` and right by ``dx[i]`` pixels, zeros shifted in:
    ``out[i, :, y, x] = x[i, :, y - dy[i], x - dx[i]]``."""
    b, _, h, w = x.shape
    ys = torch.arange(h, device=x.device).view(1, h, 1) - dy.view(b, 1, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w) - dx.view(b, 1, 1)
    # Index into a copy padded with one zero row/column on each side: out-of-range -> zero.
    ys, xs = ys.clamp(-1, h) + 1, xs.clamp(-1, w) + 1
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded[batch, ys, xs].permute(0, 3, 1, 2)


def translation(x: torch.Tensor, chosen: torch.Tensor | None = None, ratio: float = 0.125
                ) -> torch.Tensor:
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (b,), device=x.device)
    dx = torch.randint(-sx, sx + 1, (b,), device=x.device)
    if chosen is not None:  # unchosen images shift by 0
        dy, dx = dy * chosen, dx * chosen
    return translate(x, dy, dx)


def cut(x: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, size: int,
        chosen: torch.Tensor | None = None) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square centred at (``cy[i]``, ``cx[i]``) in image ``i``
    (in the ``chosen`` images only, when given)."""
    b, _, h, w = x.shape
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    top, left = (cy - size // 2).view(b, 1, 1), (cx - size // 2).view(b, 1, 1)
    inside = (ys >= top) & (ys < top + size) & (xs >= left) & (xs < left + size)
    if chosen is not None:
        inside = inside & chosen.view(b, 1, 1)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def cutout(x: torch.Tensor, chosen: torch.Tensor | None = None, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    size = int(h * ratio + 0.5)
    cy = torch.randint(0, h + (1 - size % 2), (b,), device=x.device)
    cx = torch.randint(0, w + (1 - size % 2), (b,), device=x.device)
    return cut(x, cy, cx, size, chosen)


_OPS = {"color": color, "translation": translation, "cutout": cutout}


class DiffAugment:
    """The policy's operations in the paper's order (color, translation, cutout), each applied
    to each image with probability ``p``. At ``p = 1`` no mask is drawn (the random stream, and
    so training, is that of plain DiffAugment); below 1 every operation still draws its
    parameters for the whole batch, so the cost does not depend on ``p``."""

    def __init__(self, policy: tuple[str, ...] = (), p: float = 1.0) -> None:
        self.ops = [_OPS[name] for name in DIFFAUGMENT_POLICIES if name in policy]
        self.p = p
        self.always = p == 1.0  # a fixed p of 1: no masks (adaptive p always draws them)

    def __bool__(self) -> bool:
        return bool(self.ops)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            # Below p = 1 the mask goes into the operation's parameters (identity for unchosen
            # images), so an adaptive p costs what the fixed one does.
            chosen = None if self.always else torch.rand(x.shape[0], device=x.device) < self.p
            x = op(x, chosen)
        return x


class AdaptiveAugment:
    """ADA's controller as a handler and a state_dict object (it is in every checkpoint, so a
    resumed run continues the same ``p``). After every iteration it adds D's mean sign and mean
    logit on the real batch and its mean logit on the fake batch; every ``interval`` iterations
    it turns the interval's sums (over all processes, so every rank sets the same ``p``) into

    - r_t = E[sign D(real)] (ADA's training-set heuristic), and, with a ``probe`` (D's mean
      logit on a batch of held-out faces, see ``gan.make_held_out_probe``),
    - r_v = (E[D(real)] - E[D(held-out)]) / (E[D(real)] - E[D(fake)]) (ADA's validation
      heuristic, eq. 1: 0 when D scores unseen faces as its training faces, 1 when as fakes);

    and, when adaptive, moves ``p`` by sign(signal - target) x (images in the interval) /
    (``kimg`` thousand images), clipped to [0, 1]; the signal is r_v with a probe, else r_t.
    The iteration's ``augment_p`` (the p it used) and the latest r_t / r_v go into the engine's
    output, so the history and the trackers record them."""

    def __init__(self, augment: DiffAugment, adaptive: bool, target: float, kimg: float,
                 batch_size: int, interval: int = 4,
                 probe: Callable[[int], float] | None = None) -> None:
        self.augment, self.adaptive, self.target = augment, adaptive, target
        self.step = batch_size * interval / (kimg * 1000)
        self.interval, self.probe = interval, probe
        self.sums = [0.0, 0.0, 0.0, 0]  # sign, real logit, fake logit, iterations
        self.r_t: float | None = None  # none before the first interval ends
        self.r_v: float | None = None  # none without a probe

    def __call__(self, engine: Engine) -> None:
        output = engine.state.output
        p_used = self.augment.p
        for i, key in enumerate(ADA_KEYS):
            self.sums[i] += output.pop(key)
        self.sums[3] += 1
        if engine.state.iteration % self.interval == 0:
            self.update(engine.state.iteration // self.interval)
        if self.augment:
            output["augment_p"] = p_used
        output.update(self.signals())

    def update(self, k: int) -> None:
        """The end of interval ``k``: r_t (and r_v) from its sums, then p moves."""
        held_out = self.probe(k) if self.probe else 0.0
        total = torch.tensor([*self.sums, held_out], dtype=torch.float64)
        if idist.get_world_size() > 1:
            total = idist.all_reduce(total.to(idist.device())).cpu()
        sign, real, fake, count, held_out = total.tolist()
        self.r_t = sign / count
        if self.probe:
            real, fake, held_out = real / count, fake / count, held_out / idist.get_world_size()
            # D not yet scoring real faces above fakes has nothing to overfit: r_v 0
            self.r_v = (real - held_out) / (real - fake) if real > fake else 0.0
        self.sums = [0.0, 0.0, 0.0, 0]
        if self.adaptive:
            signal = self.r_v if self.probe else self.r_t
            move = self.step * (1.0 if signal > self.target else -1.0)
            self.augment.p = min(max(self.augment.p + move, 0.0), 1.0)

    def signals(self) -> dict[str, float]:
        return {k: v for k, v in (("r_t", self.r_t), ("r_v", self.r_v)) if v is not None}

    def summary(self) -> dict[str, float]:
        """The epoch record's view: the current p (with DiffAugment) and the latest signals."""
        return {**({"augment_p": self.augment.p} if self.augment else {}), **self.signals()}

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.augment.p, "sums": list(self.sums), "r_t": self.r_t, "r_v": self.r_v}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.augment.p, self.r_t, self.r_v = state["p"], state["r_t"], state.get("r_v")
        if "sums" in state:
            self.sums = list(state["sums"])
        else:  # written before r_v: the interval's signs only (its logits restart at 0)
            self.sums = [state["sign_sum"], 0.0, 0.0, state["count"]]
