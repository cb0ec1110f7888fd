"""Settings that follow from the data set's size: a length given in images (``--kimg``) in
whole epochs, and, for a folder with fewer faces than the defaults need, the settings that fit
it (the data-size rule). Each choice is said in one log line and written to ``config.json``;
a setting the user chose is never changed (an impossible choice still gets its clear error).

The rule, for a ``--data-dir`` of n < 3,128 faces (the default 3,000 held out + a batch of 128):
- held out: a fifth of the faces, at least 20. Even the smallest set keeps faces the generator
  never saw: they are the memorisation score's null ("as novel as a new real face") and FID's
  and KID's reference; scoring against the training faces instead would make a generator that
  copies them look perfect;
- batch 32 (the measured small-data regimes of docs/recipes.md), smaller where the training
  faces would not fill two batches;
- a length of 160 kimg (5,000 iterations of 32: the length of those regimes), evaluated every
  quarter of it and checkpointed every 8 kimg (an epoch of 100 faces is 3 iterations: epoch-end
  checkpoints would come every few seconds); half of it for a fine-tune (``--init-from``), which
  ended better than the whole length from scratch on 100 faces (docs/recipes.md,
  "Fine-tuning");
- the faces decoded once into memory (``--cache``): with a few iterations an epoch, DataLoader
  workers would spend a tenth of the run starting each epoch's first batch.
"""

from __future__ import annotations

import logging
import math

from ..config import Config, default_of, flag

logger = logging.getLogger(__name__)

SMALL_KIMG = 160.0
FINE_TUNE_SHARE = 0.5  # of SMALL_KIMG, for a run that starts from trained weights
SMALL_BATCH = 32
MIN_HELD_OUT = 20


def defaults_need() -> int:
    """Faces the default held-out size and batch need."""
    return default_of("eval_size") + default_of("batch_size")


def small_data_choices(n: int, kimg: float = SMALL_KIMG) -> dict[str, object]:
    """The rule's settings for a folder of ``n`` faces trained for ``kimg`` (empty when the
    defaults fit)."""
    if n >= defaults_need():
        return {}
    held_out = max(MIN_HELD_OUT, n // 5)
    train = max(n - held_out, 2)
    batch = min(SMALL_BATCH, 2 ** max(int(math.log2(train / 2)), 0))
    return {"eval_size": held_out, "batch_size": batch, "kimg": kimg,
            "eval_every_kimg": kimg / 4, "checkpoint_every_kimg": min(8.0, kimg / 20),
            "cache": True}


def fit_to_data(cfg: Config, n: int) -> Config:
    """``cfg`` with the rule's choices for ``n`` faces where the user chose nothing, said in one
    log line. A length the user gave in epochs keeps every cadence in epochs."""
    if cfg.given is None or cfg.synthetic:
        return cfg
    length = SMALL_KIMG * (FINE_TUNE_SHARE if cfg.init_from else 1.0)
    choices = small_data_choices(n, length if cfg.kimg is None else cfg.kimg)
    in_epochs = "epochs" in cfg.given and cfg.kimg is None
    skip = {"kimg", "eval_every_kimg", "checkpoint_every_kimg"} if in_epochs else set()
    if "eval_every" in cfg.given:
        skip.add("eval_every_kimg")
    chosen = {k: v for k, v in choices.items() if k not in cfg.given and k not in skip}
    if not chosen:
        return cfg
    logger.info("data: %d faces, fewer than the defaults need (%d): chose %s; a flag overrides "
                "any of them", n, defaults_need(),
                ", ".join(_flag_text(k, v) for k, v in chosen.items()))
    return cfg.replace(**chosen)


def _flag_text(key: str, value: object) -> str:
    if isinstance(value, bool):
        return f"--{flag(key)}" if value else f"--no-{flag(key)}"
    return f"--{flag(key)} {value:g}" if isinstance(value, float) else f"--{flag(key)} {value}"


def epochs_for_kimg(cfg: Config, epoch_length: int) -> Config:
    """With ``--kimg``: the whole epochs of ``epoch_length`` iterations that show at least that
    many images (said in one log line); otherwise ``cfg``."""
    if cfg.kimg is None:
        return cfg
    per_epoch = epoch_length * cfg.batch_size
    epochs = max(1, math.ceil(cfg.kimg * 1000 / per_epoch))
    logger.info("--kimg %g: %d epochs of %d images (%g kimg)", cfg.kimg, epochs, per_epoch,
                epochs * per_epoch / 1000)
    return cfg.replace(epochs=epochs)
