"""The run's handlers on a real Engine over real image files: firing order at epoch end,
snapshots, weight init, the NaN guard, interruptions and the plots' time share."""

import pytest
import torch
from helpers import checkpoint_names
from ignite.engine import Events

from animegan_ignite.config import Config
from animegan_ignite.data.loading import make_split, make_train_loader
from animegan_ignite.errors import Diverged
from animegan_ignite.networks.architecture import Architecture
from animegan_ignite.networks.gan import build_gan
from animegan_ignite.rundir import RunDir
from animegan_ignite.runs.history import read_history, split_history
from animegan_ignite.training.handlers import PlotExport, setup_handlers
from animegan_ignite.training.trainer import build_trainer


def _setup(image_dir, run_path, snapshot_every=100, epochs=3, checkpoint_every=0, clock=None):
    """A tiny GAN in a real trainer with every handler; 104 train images / 8 = 13 iterations."""
    cfg = Config(data_dir=str(image_dir), recipe="dcgan", nz=16, ngf=8, ndf=8, batch_size=8,
                 eval_size=16, snapshot_every=snapshot_every, epochs=epochs, progress=False,
                 eval_every=0, checkpoint_every=checkpoint_every)
    torch.manual_seed(0)
    gan = build_gan(Architecture.of(cfg), cfg.lr, cfg.beta1, torch.device("cpu"))
    trainer, ctx, _ = build_trainer(cfg, RunDir(run_path), gan)
    if clock is not None:
        ctx.clock = clock
    setup_handlers(trainer, ctx)
    split = make_split(str(image_dir), eval_size=16, batch_size=8, seed=0)
    return trainer, ctx, make_train_loader(split.train, 8, num_workers=0, seed=0)


def _run(trainer, ctx, loader, epochs):
    try:
        trainer.run(loader, max_epochs=epochs)
    finally:
        ctx.close()


def test_snapshots_exactly_at_multiples_of_n_and_losses_every_iteration(image_dir, tmp_path):
    trainer, ctx, loader = _setup(image_dir, tmp_path, snapshot_every=4)
    _run(trainer, ctx, loader, 2)
    names = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert names == ["final.png"] + [f"iter_{i:07d}.png" for i in (4, 8, 12, 16, 20, 24)]
    iters, epochs = split_history(read_history(tmp_path))
    assert [r["iteration"] for r in iters] == list(range(1, 27))
    assert [e["epoch"] for e in epochs] == [1, 2]
    mean_d = sum(r["loss_d"] for r in iters[:13]) / 13  # the epoch record: that epoch's mean
    assert epochs[0]["loss_d"] == pytest.approx(mean_d)


def test_the_regular_checkpoint_is_written_after_the_record_and_the_best(image_dir, tmp_path):
    trainer, ctx, loader = _setup(image_dir, tmp_path)
    seen = []
    save = ctx.regular.save_handler

    def spying_save(checkpoint, filename, metadata=None):
        it = checkpoint["trainer"]["iteration"]
        seen.append((filename, it // 13 in ctx.history.epochs_recorded()))
        save(checkpoint, filename, metadata)

    ctx.regular.save_handler = spying_save
    _run(trainer, ctx, loader, 2)
    assert seen == [("checkpoint_13.pt", True), ("checkpoint_26.pt", True)]


def test_weights_are_initialised_at_start_but_not_over_loaded_ones(image_dir, tmp_path):
    trainer, ctx, loader = _setup(image_dir, tmp_path / "a")
    marker = {}

    @trainer.on(Events.STARTED)
    def look(engine):
        marker["std"] = ctx.gan.netG.main[0].weight.std().item()

    _run(trainer, ctx, loader, 1)
    assert abs(marker["std"] - 0.02) < 0.002  # DCGAN init ran before any step

    trainer2, ctx2, loader2 = _setup(image_dir, tmp_path / "b")
    ctx2.gan.netG.load_state_dict(ctx.gan.netG.state_dict())
    loaded = {k: v.clone() for k, v in ctx2.gan.netG.state_dict().items()}
    trainer2.load_state_dict({"epoch": 1, "epoch_length": 13, "max_epochs": 1})
    seen = {}
    trainer2.add_event_handler(Events.STARTED, lambda e: seen.update(
        {k: v.clone() for k, v in ctx2.gan.netG.state_dict().items()}))
    _run(trainer2, ctx2, loader2, 2)
    assert all(torch.equal(seen[k], loaded[k]) for k in loaded)


def test_a_nan_loss_raises_diverged_and_keeps_the_last_good_checkpoint(image_dir, tmp_path):
    trainer, ctx, loader = _setup(image_dir, tmp_path, snapshot_every=16)

    @trainer.on(Events.ITERATION_COMPLETED(once=15))
    def poison(engine):  # a diverged discriminator
        with torch.no_grad():
            next(ctx.gan.netD.parameters()).fill_(float("nan"))

    with pytest.raises(Diverged, match="diverged at iteration 16"):
        _run(trainer, ctx, loader, 3)
    assert checkpoint_names(tmp_path) == ["checkpoint_13.pt"]
    saved = torch.load(tmp_path / "checkpoints" / "checkpoint_13.pt")["netD"]
    assert all(torch.isfinite(v).all() for v in saved.values())
    iters, _ = split_history(read_history(tmp_path))
    assert iters[-1]["iteration"] == 15  # the NaN iteration is not recorded
    assert not (tmp_path / "snapshots" / "final.png").exists()
    assert not (tmp_path / "snapshots" / "iter_0000016.png").exists()  # nor drawn


def test_ctrl_c_inside_an_iteration_checkpoints_the_last_finished_one(image_dir, tmp_path):
    trainer, ctx, loader = _setup(image_dir, tmp_path)

    @trainer.on(Events.ITERATION_STARTED(once=5))
    def ctrl_c(engine):  # the signal arrives while iteration 5 runs
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(trainer, ctx, loader, 1)
    assert checkpoint_names(tmp_path) == ["checkpoint_4.pt"]
    assert [r["iteration"] for r in split_history(read_history(tmp_path))[0]] == [1, 2, 3, 4]
    saved = torch.load(tmp_path / "checkpoints" / "checkpoint_4.pt")
    assert saved["trainer"]["iteration"] == 4
    assert len(saved["run_state"]["rng"]) == 1  # the RNG states at the end of iteration 4


def test_plots_take_at_most_a_twentieth_of_the_time_but_the_last_epoch_is_always_drawn(image_dir,
                                                                                    tmp_path):
    # The plots' clock: the run starts at 0 s (its first redraw due 19 s later, taken to cost
    # 1 s); epoch 1 ends at 100 s and its redraw takes 100 s, so the next is due 1,900 s later:
    # epochs 2 to 4 (ending at 201-203 s) skip it, and the run's end draws the last epoch (once:
    # not at its epoch end too).
    clock = iter([0.0, 100.0, 200.0, 201.0, 202.0, 203.0]).__next__
    trainer, ctx, loader = _setup(image_dir, tmp_path, epochs=4, clock=clock)
    drawn = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: drawn.append(
        (tmp_path / "plots" / "losses.png").stat().st_mtime_ns))
    _run(trainer, ctx, loader, 4)
    assert drawn[0] == drawn[1] == drawn[2] == drawn[3]
    assert (tmp_path / "plots" / "losses.png").stat().st_mtime_ns > drawn[3]
    assert read_history(tmp_path)[-1]["kind"] == "end"

    clock = iter([0.0, 1.0, 5.0, 6.0, 9.5, 10.0, 12.0, 12.0, 13.0]).__next__
    plots = PlotExport(tmp_path, share=0.1, clock=clock, first_cost=0.5)
    # started at 0 s: the first due at 4.5 s, so skipped at 1 s; drawn from 5 to 6 s: due again
    # 9 s later; drawn when forced (9.5 to 10 s); due at 14.5 s, so skipped at 12 s and drawn
    # only because forced at 12 s (ends at 13 s)
    assert [plots(), plots(), plots(force=True), plots(), plots(force=True)] == [
        False, True, True, False, True]
    assert plots.next_due == 13.0 + 9.0


def test_checkpoint_every_n_iterations_inside_epochs_and_the_latest_two_kept(image_dir, tmp_path):
    trainer, ctx, loader = _setup(image_dir, tmp_path, epochs=2, checkpoint_every=5)
    seen = {}

    @trainer.on(Events.ITERATION_COMPLETED)
    @trainer.on(Events.EPOCH_COMPLETED)
    def on_disk(engine):  # after the run's own handlers of the event
        seen[engine.state.iteration] = checkpoint_names(tmp_path)

    _run(trainer, ctx, loader, 2)
    assert seen[5] == ["checkpoint_5.pt"] and seen[9] == ["checkpoint_5.pt"]
    assert seen[13] == ["checkpoint_10.pt", "checkpoint_13.pt"]  # the epoch end's
    assert seen[15] == ["checkpoint_13.pt", "checkpoint_15.pt"]
    assert seen[26] == ["checkpoint_25.pt", "checkpoint_26.pt"]
    mid = torch.load(tmp_path / "checkpoints" / "checkpoint_25.pt")
    assert mid["trainer"]["iteration"] == 25 and len(mid["run_state"]["rng"]) == 1


def test_a_rotated_checkpoint_is_deleted_only_after_the_next_one_is_complete(image_dir, tmp_path):
    """ignite deletes the oldest file first; a write failing then would leave one fewer."""
    trainer, ctx, loader = _setup(image_dir, tmp_path, epochs=3)
    during = []
    saver = ctx.regular.save_handler
    write = saver.__class__.__call__

    def watching(self, checkpoint, filename, metadata=None):
        during.append(checkpoint_names(tmp_path))
        write(self, checkpoint, filename, metadata)

    saver.__class__.__call__ = watching
    try:
        _run(trainer, ctx, loader, 3)
    finally:
        saver.__class__.__call__ = write
    assert during[2] == ["checkpoint_13.pt", "checkpoint_26.pt"]  # both there while 39 is written
    assert checkpoint_names(tmp_path) == ["checkpoint_26.pt", "checkpoint_39.pt"]
