"""The trainer: outputs, exact resume, stopping, events, learning, and clear errors on bad input."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import read_losses, tiny_config

from copycat_nuke import catfile, imageio
from copycat_nuke.config import TrainConfig
from copycat_nuke.errors import (
    CatFileError,
    ConfigError,
    FrameMissingError,
    ResolutionMismatchError,
    TrainingDivergedError,
    TrainingError,
)
from copycat_nuke.train import (
    CheckpointWritten,
    ContactSheetWritten,
    Finished,
    Started,
    StepDone,
    Trainer,
    latest_checkpoint,
    learning_rate,
    train_in_background,
    train_model,
)


def test_training_writes_model_checkpoints_contact_sheets_loss_log_and_config(tmp_path):
    events = []
    result = train_model(tiny_config(tmp_path), listeners=[events.append])
    run = tmp_path / "run"
    assert result.model_path == run / "model.cat" and result.steps == 6 and not result.stopped
    model = catfile.load_cat(result.model_path)
    assert model.manifest.kind == "model" and model.manifest.channels_in == ["R", "G", "B"]
    assert model.manifest.training["steps"] == 6 and model.manifest.training["source_frames"] == "1-3"
    assert sorted(p.name for p in (run / "checkpoints").glob("*.cat")) == [
        "checkpoint.0000003.cat",
        "checkpoint.0000006.cat",
    ]
    assert sorted(p.name for p in (run / "contact_sheets").glob("*.png")) == [
        "contact_sheet.0000003.png",
        "contact_sheet.0000006.png",
    ]
    sheet = imageio.read_frame(run / "contact_sheets" / "contact_sheet.0000006.png")
    assert sheet.pixels.shape[1] > 4 * 32  # four tiles side by side
    assert [step for step, _ in read_losses(run / "loss.csv")] == [1, 2, 3, 4, 5, 6]
    assert imageio.read_frame(run / "loss.png").pixels.shape[0] > 100
    assert (run / "config.yaml").read_text().count("model_size: small") == 1
    kinds = [type(e) for e in events]
    assert kinds[0] is Started and kinds[-1] is Finished
    assert kinds.count(StepDone) == 6 and CheckpointWritten in kinds and ContactSheetWritten in kinds
    last_step = [e for e in events if isinstance(e, StepDone)][-1]
    assert last_step.step == 6 and last_step.eta_seconds == 0 and last_step.patches_per_second > 0


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_resume_reproduces_uninterrupted_losses(tmp_path, precision):
    whole = train_model(tiny_config(tmp_path / "a", precision=precision, steps=8, checkpoint_interval=4))

    stop = threading.Event()

    def stop_at_four(event):
        if isinstance(event, StepDone) and event.step == 4:
            stop.set()

    config = tiny_config(tmp_path / "b", precision=precision, steps=8, checkpoint_interval=100)
    first = Trainer(config, [stop_at_four], stop).run()
    assert first.stopped and first.steps == 4
    resumed = train_model(config, resume=True)
    assert resumed.steps == 8
    assert first.losses + resumed.losses == whole.losses
    assert read_losses(tmp_path / "b" / "run" / "loss.csv") == read_losses(tmp_path / "a" / "run" / "loss.csv")


def test_stop_is_honoured_within_one_step_and_leaves_a_valid_checkpoint(tmp_path):
    stop = threading.Event()

    def stop_at_two(event):
        if isinstance(event, StepDone) and event.step == 2:
            stop.set()

    result = Trainer(tiny_config(tmp_path, steps=1000), [stop_at_two], stop).run()
    assert result.stopped and result.steps == 2
    checkpoint = latest_checkpoint(tmp_path / "run")
    assert checkpoint is not None and checkpoint.name == "checkpoint.0000002.cat"
    assert catfile.load_cat(checkpoint).resume.step == 2
    assert catfile.load_cat(result.model_path).manifest.training["steps"] == 2


def test_background_job_can_be_stopped_and_reports_events(tmp_path):
    job = train_in_background(tiny_config(tmp_path, steps=10_000))
    first = job.events.get(timeout=60)
    assert isinstance(first, Started)
    job.stop()
    result = job.wait(timeout=60)
    assert result is not None and result.stopped and result.steps < 10_000
    assert not job.running


def test_training_learns_the_effect(tmp_path):
    result = train_model(
        tiny_config(tmp_path, steps=60, learning_rate=1e-3, image_interval=100, checkpoint_interval=100)
    )
    first, last = np.mean(result.losses[:5]), np.mean(result.losses[-5:])
    assert last < 0.5 * first


def test_epochs_count_steps_as_nuke_does(tmp_path):
    result = train_model(tiny_config(tmp_path, steps=None, epochs=4, batch_size=2))
    assert result.total_steps == 6  # ceil(4 epochs × 3 pairs / batch 2)


def test_initial_weights_start_from_a_previous_model(tmp_path):
    first = train_model(tiny_config(tmp_path / "a", steps=3))
    second = train_model(tiny_config(tmp_path / "b", steps=1, initial_weights=str(first.model_path)))
    assert second.losses[0] < first.losses[0]


def test_learning_rate_decays_from_base_to_a_floor():
    rates = [learning_rate(step, 100, 1e-3) for step in range(100)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(5e-5)
    assert all(a >= b for a, b in zip(rates, rates[1:]))


# --------------------------------------------------------------------------------------- bad input
def test_no_ground_truth_frames_is_refused_before_training(tmp_path):
    config = tiny_config(tmp_path, target=str(tmp_path / "nothing.####.exr"))
    with pytest.raises(TrainingError, match="at least 1 Input/Ground Truth pair"):
        train_model(config)


def test_missing_input_frame_is_named(tmp_path):
    config = tiny_config(tmp_path)
    Path(config.input.replace("####", "0002")).unlink()
    with pytest.raises(FrameMissingError, match="2"):
        train_model(config)


def test_input_and_ground_truth_sizes_must_match(tmp_path):
    config = tiny_config(tmp_path)
    imageio.write_frame(config.target.replace("####", "0002"), np.zeros((40, 64, 3), np.float32), "rgb")
    with pytest.raises(ResolutionMismatchError):
        train_model(config)


def test_batch_larger_than_the_pairs_is_refused(tmp_path):
    with pytest.raises(TrainingError, match="batch size 5 is larger than the 3 training pair"):
        train_model(tiny_config(tmp_path, batch_size=5))


def test_unwritable_output_directory_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(TrainingError, match="cannot write to the output directory"):
        train_model(tiny_config(tmp_path, out=str(blocker / "run")))


def test_crop_larger_than_the_frame_is_clipped_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="[Cc]rop size 256"):
        result = train_model(tiny_config(tmp_path, crop_size=256, steps=1))
    assert catfile.load_cat(result.model_path).manifest.training["crop_size"] == 48


def test_nan_in_the_frames_is_replaced_with_a_warning_naming_the_file(tmp_path):
    config = tiny_config(tmp_path, steps=1)
    path = config.input.replace("####", "0001")
    image = imageio.read_frame(path).pixels
    image[0, 0, 0] = np.nan
    imageio.write_frame(path, image, "rgb", pixel_type="float")
    with pytest.warns(UserWarning, match=r"1 NaN.*in\.0001\.exr"):
        train_model(config)


def test_initial_weights_with_other_channels_are_refused(tmp_path):
    alpha = train_model(tiny_config(tmp_path / "a", steps=1, channels_out="r"))
    with pytest.raises(CatFileError, match="Ground Truth channel"):
        train_model(tiny_config(tmp_path / "b", initial_weights=str(alpha.model_path)))


def test_resume_with_another_architecture_is_refused(tmp_path):
    train_model(tiny_config(tmp_path, steps=3))
    with pytest.raises(CatFileError, match="different network"):
        train_model(tiny_config(tmp_path, model_size="medium"), resume=True)


def test_resume_without_checkpoints_says_so(tmp_path):
    with pytest.raises(TrainingError, match="nothing to resume"):
        train_model(tiny_config(tmp_path), resume=True)


def test_unknown_keyword_setting_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown training setting"):
        train_model(tiny_config(tmp_path), stepz=3)


@pytest.mark.parametrize("kind", ["charbonnier", "l1", "mse"])
def test_pixel_losses_are_zero_for_a_perfect_prediction_and_grow_with_error(kind):
    import torch

    from copycat_nuke.train import pixel_loss

    target = torch.rand(1, 3, 8, 8)
    losses = [float(pixel_loss(target + e, target, kind)) for e in (0.0, 0.01, 0.1)]
    assert losses[0] == pytest.approx(0.0, abs=1e-7) and losses[0] < losses[1] < losses[2]


def test_charbonnier_is_l1_for_large_errors_and_quadratic_near_zero():
    import torch

    from copycat_nuke.train import pixel_loss

    target = torch.zeros(1, 1, 4, 4)
    assert float(pixel_loss(target + 0.5, target)) == pytest.approx(0.5 - 0.01, rel=1e-3)
    tiny = torch.full((1, 1, 4, 4), 1e-5, requires_grad=True)
    pixel_loss(tiny, target).backward()
    assert float(tiny.grad.abs().max()) < 0.01 / 16  # L1 would push with full force at any error


def test_multiscale_loss_weighs_each_finer_level_twice_the_coarser_one_or_all_equally():
    import torch

    from copycat_nuke.config import LEVEL_WEIGHTINGS
    from copycat_nuke.train import LEVEL_WEIGHTS, multiscale_loss

    assert ("auto", *LEVEL_WEIGHTS) == LEVEL_WEIGHTINGS  # the config's choices are the trainer's, and auto
    target = torch.zeros(1, 1, 8, 8)
    # Coarse to fine, errors 0.5, 0.25 and 0.125 (L1): each level is checked against the target at its size.
    outputs = [target[..., :2, :2] + 0.5, target[..., :4, :4] + 0.25, target + 0.125]
    # "equal" is exactly the plain float32 mean this trainer used before the weights existed
    assert float(multiscale_loss(outputs, target, "l1", "equal")) == float(torch.tensor(0.5 + 0.25 + 0.125) / 3)
    assert float(multiscale_loss(outputs, target, "l1", "doubling")) == pytest.approx(
        (1 * 0.5 + 2 * 0.25 + 4 * 0.125) / 7
    )
    assert float(multiscale_loss(outputs, target, "l1", "pixels")) == pytest.approx(  # by pixel count: 4, 16, 64
        (1 * 0.5 + 4 * 0.25 + 16 * 0.125) / 21
    )
    assert float(multiscale_loss(outputs, target, "l1")) == float(multiscale_loss(outputs, target, "l1", "equal"))
    # A box-downscaled target is what a coarse level is scored against, so a right coarse answer costs nothing.
    ramp = torch.arange(64.0).reshape(1, 1, 8, 8)
    coarse = torch.nn.functional.avg_pool2d(ramp, 4)
    assert float(multiscale_loss([coarse, ramp], ramp, "l1", "doubling")) == 0.0


def test_the_level_weights_setting_reaches_the_loss_and_the_manifest(tmp_path, monkeypatch):
    from copycat_nuke import train

    seen = []
    original = train.multiscale_loss

    def spy(outputs, target, kind="charbonnier", level_weights="equal"):
        seen.append(level_weights)
        return original(outputs, target, kind, level_weights)

    monkeypatch.setattr(train.loop, "multiscale_loss", spy)
    # (batch_size is set by tiny_config: an automatic one's probe step would call the loss too)
    result = train_model(tiny_config(tmp_path, steps=2, level_weights="pixels", checkpoint_interval=2))
    assert seen == ["pixels", "pixels"]  # not the function's default (equal)
    assert catfile.load_cat(result.model_path).manifest.config["level_weights"] == "pixels"
    assert TrainConfig().level_weights == "auto"


def test_a_resumed_run_keeps_the_level_weights_it_started_with(tmp_path):
    whole = train_model(tiny_config(tmp_path / "a", steps=8, checkpoint_interval=4, level_weights="equal"))
    stop = threading.Event()

    def stop_at_four(event):
        if isinstance(event, StepDone) and event.step == 4:
            stop.set()

    config = tiny_config(tmp_path / "b", steps=8, checkpoint_interval=100, level_weights="equal")
    first = Trainer(config, [stop_at_four], stop).run()
    # Make it a checkpoint from before the setting existed (no level_weights in its config): equal weights.
    path = latest_checkpoint(config.out)
    cat = catfile.load_cat(path)
    old_config = {key: value for key, value in cat.manifest.config.items() if key != "level_weights"}
    catfile.save_cat(path, replace(cat.manifest, config=old_config), cat.weights, cat.resume)
    with pytest.warns(UserWarning, match="resuming with level_weights equal, as checkpoint.0000004.cat was trained"):
        resumed = train_model(replace(config, level_weights="doubling"), resume=True)
    assert first.losses + resumed.losses == whole.losses  # the same loss throughout: exactly the whole run's
    assert catfile.read_manifest(resumed.model_path).config["level_weights"] == "equal"
    assert "level_weights: equal" in (tmp_path / "b" / "run" / "config.yaml").read_text()


def test_the_gradient_guard_tames_a_blow_up_and_a_resumed_run_keeps_its_history(tmp_path, monkeypatch):
    from copycat_nuke import train
    from copycat_nuke.gradients import GradientGuard

    # A learning rate 10× too high blows this job up at step 3; a warm-up of 2 steps lets the guard act at once.
    monkeypatch.setattr(train.loop, "GradientGuard", lambda factor: GradientGuard(factor, warmup=2))
    settings = dict(steps=12, learning_rate=5e-3, gradient_clip=4.0)
    whole = train_model(tiny_config(tmp_path / "a", checkpoint_interval=6, **settings))
    clipped = catfile.read_manifest(whole.model_path).training["gradient_clipped_steps"]
    unguarded = train_model(tiny_config(tmp_path / "c", checkpoint_interval=6, **{**settings, "gradient_clip": 0.0}))
    assert unguarded.losses[:3] == whole.losses[:3] and whole.losses[2] > 100 * whole.losses[0]  # the blow-up
    assert 0 < clipped < 12 and catfile.read_manifest(unguarded.model_path).training["gradient_clipped_steps"] == 0
    assert whole.losses[-1] < unguarded.losses[-1] / 10  # the guarded run came back down; the other did not

    stop = threading.Event()

    def stop_at_six(event):
        if isinstance(event, StepDone) and event.step == 6:
            stop.set()

    config = tiny_config(tmp_path / "b", checkpoint_interval=100, **settings)
    first = Trainer(config, [stop_at_six], stop).run()
    assert first.steps == 6 and catfile.load_cat(latest_checkpoint(config.out)).resume.extra["gradient_guard"]["norms"]
    resumed = train_model(config, resume=True)
    assert first.losses + resumed.losses == whole.losses  # the history came back: the same clipping
    assert catfile.read_manifest(resumed.model_path).training["gradient_clipped_steps"] == clipped
    assert "gradient_clip: 4.0" in (tmp_path / "b" / "run" / "config.yaml").read_text()
    assert TrainConfig().gradient_clip == 0.0  # off unless asked for (by measurement)


def test_a_run_that_diverges_stops_with_an_error_naming_the_step_and_what_to_do(tmp_path, monkeypatch):
    from copycat_nuke import train

    # The learning rate 10× too high of the guard's test blows this job up at step 3 (0.013, 0.22, then 1.2e3,
    # 7.6, 3.9e3, 0.76, 77, 1.5e2, 13, 28): with a window of 2 steps and a streak of 4, steps 7-10 are all over
    # 100× the median of steps 1-2, the lowest the run had, so it stops at step 10.
    monkeypatch.setattr(train.loop, "DIVERGENCE_WINDOW", 2)
    monkeypatch.setattr(train.loop, "DIVERGENCE_STEPS", 4)
    config = tiny_config(tmp_path / "a", steps=12, learning_rate=5e-3, gradient_clip=0.0, checkpoint_interval=100)
    with pytest.raises(TrainingDivergedError, match=r"training diverged at step 10: .*\(--gradient-clip 10,") as caught:
        train_model(config)
    assert "before step 6" in str(caught.value) and str(tmp_path / "a" / "run" / "checkpoints") in str(caught.value)
    assert not (tmp_path / "a" / "run" / "model.cat").exists()  # no useless network handed on as the result
    assert [step for step, _ in read_losses(tmp_path / "a" / "run" / "loss.csv")] == list(range(1, 11))  # kept
    steady = train_model(tiny_config(tmp_path / "b", steps=12, gradient_clip=0.0))  # the same check, a sane rate
    assert steady.steps == 12 and max(steady.losses[2:]) < 100 * min(steady.losses[:2])


def test_a_checkpoint_from_before_the_guard_resumes_without_it_and_a_broken_guard_state_is_refused(tmp_path):
    whole = train_model(tiny_config(tmp_path / "a", steps=8, checkpoint_interval=4, gradient_clip=0.0))
    stop = threading.Event()

    def stop_at_four(event):
        if isinstance(event, StepDone) and event.step == 4:
            stop.set()

    config = tiny_config(tmp_path / "b", steps=8, checkpoint_interval=100, gradient_clip=0.0)
    first = Trainer(config, [stop_at_four], stop).run()
    path = latest_checkpoint(config.out)
    cat = catfile.load_cat(path)
    old_config = {key: value for key, value in cat.manifest.config.items() if key != "gradient_clip"}
    old_extra = {key: value for key, value in cat.resume.extra.items() if key != "gradient_guard"}
    catfile.save_cat(path, replace(cat.manifest, config=old_config), cat.weights, replace(cat.resume, extra=old_extra))
    resume_config = replace(config, gradient_clip=4.0)  # the job now asks for the guard
    with pytest.warns(UserWarning, match="resuming with gradient_clip 0, as checkpoint.0000004.cat was trained"):
        resumed = train_model(resume_config, resume=True)
    assert first.losses + resumed.losses == whole.losses
    assert catfile.read_manifest(resumed.model_path).config["gradient_clip"] == 0.0
    assert "gradient_clip: 0.0" in (tmp_path / "b" / "run" / "config.yaml").read_text()

    latest_checkpoint(config.out).unlink()  # the finished run's: step 4's is the latest again
    broken = replace(cat.resume, extra={**old_extra, "gradient_guard": {"norms": [-1.0], "clipped": 0}})
    catfile.save_cat(path, cat.manifest, cat.weights, broken)
    with pytest.raises(CatFileError, match=r"checkpoint\.0000004\.cat: gradient guard state: norms must be"):
        train_model(config, resume=True)
