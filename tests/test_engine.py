"""The training step and the per-iteration handlers, on a real Engine and real image files."""

import math

import torch
from ignite.engine import Events

from animegan_ignite.data import make_split, make_train_loader
from animegan_ignite.engine import build_gan, create_trainer, make_training_step
from animegan_ignite.history import History, read_history, split_history


def _tiny_gan():
    torch.manual_seed(0)
    return build_gan(nz=16, ngf=8, ndf=8, lr=2e-4, beta1=0.5, device=torch.device("cpu"))


def _loader(image_dir, batch=8):
    split = make_split(str(image_dir), eval_size=16, batch_size=batch, seed=0)
    return make_train_loader(split.train, batch, num_workers=0, seed=0)


def test_one_step_updates_both_networks_and_returns_finite_outputs(image_dir):
    gan = _tiny_gan()
    before_g = [p.clone() for p in gan.netG.parameters()]
    before_d = [p.clone() for p in gan.netD.parameters()]
    batch = next(iter(_loader(image_dir)))
    out = make_training_step(gan)(None, batch)
    assert set(out) == {"loss_d", "loss_g", "d_x", "d_g_z1", "d_g_z2"}
    assert all(math.isfinite(v) for v in out.values())
    assert all(0 <= out[k] <= 1 for k in ("d_x", "d_g_z1", "d_g_z2"))
    assert any(not torch.equal(a, b) for a, b in zip(before_g, gan.netG.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, gan.netD.parameters(), strict=True))


def test_each_step_draws_fresh_noise(image_dir):
    gan = _tiny_gan()
    step = make_training_step(gan)
    batch = next(iter(_loader(image_dir)))
    states = []
    for _ in range(3):
        states.append(torch.get_rng_state())
        step(None, batch)
    assert not torch.equal(states[0], states[1]) and not torch.equal(states[1], states[2])


def test_snapshots_exactly_at_multiples_of_n_and_losses_every_iteration(image_dir, tmp_path):
    gan = _tiny_gan()
    history = History(tmp_path)
    noise = torch.randn(64, 16, 1, 1)
    trainer = create_trainer(gan, noise, tmp_path, history, snapshot_every=4, progress=False)
    loader = _loader(image_dir)  # 104 train images / 8 = 13 iterations per epoch
    trainer.run(loader, max_epochs=2)
    history.close()
    names = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert names == [f"iter_{i:07d}.png" for i in (4, 8, 12, 16, 20, 24)]
    iters, _ = split_history(read_history(tmp_path))
    assert [r["iteration"] for r in iters] == list(range(1, 27))
    assert {r["epoch"] for r in iters} == {1, 2}


def test_weights_are_initialised_at_start_but_not_over_loaded_ones(image_dir, tmp_path):
    gan = _tiny_gan()
    trainer = create_trainer(gan, torch.randn(64, 16, 1, 1), tmp_path, None, 100, progress=False)
    marker = {}

    @trainer.on(Events.STARTED)
    def look(engine):
        marker["std"] = gan.netG.main[0].weight.std().item()

    trainer.run(_loader(image_dir), max_epochs=1)
    assert abs(marker["std"] - 0.02) < 0.002  # DCGAN init ran before any step

    loaded = {k: v.clone() for k, v in gan.netG.state_dict().items()}
    trainer2 = create_trainer(gan, torch.randn(64, 16, 1, 1), tmp_path, None, 100, progress=False)
    trainer2.load_state_dict({"epoch": 1, "epoch_length": 13, "max_epochs": 1})
    seen = {}
    trainer2.add_event_handler(
        Events.STARTED, lambda e: seen.update({k: v.clone() for k, v in gan.netG.state_dict().items()}))
    trainer2.run(_loader(image_dir), max_epochs=2)
    assert all(torch.equal(seen[k], loaded[k]) for k in loaded)


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(image_dir, tmp_path):
    from animegan_ignite.checkpoint import list_checkpoints, make_checkpointer
    from animegan_ignite.engine import attach_epoch_handlers

    gan = _tiny_gan()
    trainer = create_trainer(gan, torch.randn(64, 16, 1, 1), tmp_path, None, 100, progress=False)
    checkpointer = make_checkpointer(tmp_path, {"trainer": trainer, "netD": gan.netD})
    attach_epoch_handlers(trainer, checkpointer, on_epoch_end=lambda e: None,
                          on_interrupt=lambda e: None)

    @trainer.on(Events.ITERATION_COMPLETED(once=15))
    def poison(engine):  # a diverged discriminator
        with torch.no_grad():
            next(gan.netD.parameters()).fill_(float("nan"))

    trainer.run(_loader(image_dir), max_epochs=3)
    assert trainer.state.iteration == 16  # the first NaN loss ends the run
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint_13.pt"]
    saved = torch.load(list_checkpoints(tmp_path)[0])["netD"]
    assert all(torch.isfinite(v).all() for v in saved.values())


def test_ctrl_c_inside_an_iteration_checkpoints_the_last_finished_one(image_dir, tmp_path):
    import pytest

    from animegan_ignite.checkpoint import list_checkpoints, make_checkpointer
    from animegan_ignite.engine import attach_epoch_handlers

    gan = _tiny_gan()
    history = History(tmp_path)
    trainer = create_trainer(gan, torch.randn(64, 16, 1, 1), tmp_path, history, 100,
                             progress=False)
    attach_epoch_handlers(trainer, make_checkpointer(tmp_path, {"trainer": trainer, "netG": gan.netG}),
                          on_epoch_end=lambda e: None, on_interrupt=lambda e: None)

    @trainer.on(Events.ITERATION_STARTED(once=5))
    def ctrl_c(engine):  # the signal arrives while iteration 5 runs
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trainer.run(_loader(image_dir), max_epochs=1)
    history.close()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint_4.pt"]
    assert [r["iteration"] for r in split_history(read_history(tmp_path))[0]] == [1, 2, 3, 4]
    assert torch.load(list_checkpoints(tmp_path)[0])["trainer"]["iteration"] == 4
