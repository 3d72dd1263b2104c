"""Multi-resolution training: the schedule, the downscaled pairs, and exact resume across stages."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from copycat_nuke import catfile, imageio, train, transfer
from copycat_nuke.config import TrainConfig, save_yaml
from copycat_nuke.data import Pair, PatchSampler
from copycat_nuke.models import MODEL_SIZES
from copycat_nuke.train import (
    Started,
    StepDone,
    Trainer,
    downscale_pairs,
    fine_level_weights,
    local_share,
    resolution_factor,
    surviving_effect,
    train_model,
)


def write_pairs(directory: Path, size: int = 128, frames: tuple[int, ...] = (1, 2)) -> tuple[str, str]:
    rng = np.random.default_rng(3)
    for frame in frames:
        image = rng.random((size // 8, size // 8, 3), dtype=np.float32).repeat(8, 0).repeat(8, 1)
        truth = image * np.array([0.7, 1.0, 1.3], np.float32)
        imageio.write_frame(directory / f"in.{frame:04d}.exr", image, "rgb", pixel_type="float")
        imageio.write_frame(directory / f"gt.{frame:04d}.exr", truth, "rgb", pixel_type="float")
    return str(directory / "in.####.exr"), str(directory / "gt.####.exr")


def config(directory: Path, **overrides: object) -> TrainConfig:
    directory.mkdir(parents=True, exist_ok=True)
    source, truth = write_pairs(directory)
    settings: dict[str, object] = dict(
        input=source,
        target=truth,
        out=str(directory / "run"),
        steps=10,
        model_size="small",
        batch_size=2,
        crop_size=64,
        checkpoint_interval=100,
        image_interval=100,
        precision="fp32",
        multi_resolution=True,
        seed=4,
    )
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """The (Input, Ground Truth) shapes of every batch the sampler hands out during the test."""
    shapes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    real = PatchSampler.next_batch

    def record(self: PatchSampler):  # type: ignore[no-untyped-def]
        batch = real(self)
        shapes.append((tuple(batch[0].shape), tuple(batch[1].shape)))
        return batch

    monkeypatch.setattr(PatchSampler, "next_batch", record)
    return shapes


def input_shapes(batches: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> list[tuple[int, ...]]:
    return [source for source, _ in batches]


def test_the_schedule_is_quarter_then_half_then_full_resolution():
    assert [resolution_factor(step, 10) for step in range(10)] == [4, 4, 2, 2, 1, 1, 1, 1, 1, 1]
    assert [resolution_factor(step, 10, stages=(2,)) for step in range(10)] == [1, 1, 2, 2, 1, 1, 1, 1, 1, 1]
    assert [resolution_factor(step, 10, stages=()) for step in range(10)] == [1] * 10


def fine_detail(size: int, seed: int = 5) -> np.ndarray:
    """Pixel-scale texture: what a soften changes and a downscale averages away."""
    return np.random.default_rng(seed).random((size, size, 3), dtype=np.float32) * 0.5 + 0.25


def test_surviving_effect_tells_a_grade_from_a_pixel_scale_soften():
    working = transfer.Transfer()
    linear = fine_detail(64)
    image = working.to_working(linear)

    def pair(truth_linear: np.ndarray, label: str) -> list[Pair]:
        return [Pair(image, working.to_working(truth_linear.astype(np.float32)), label)]

    soft = (linear + np.roll(linear, 1, 0) + np.roll(linear, 1, 1) + np.roll(linear, (1, 1), (0, 1))) / 4
    assert surviving_effect(pair(linear * 1.2 + 0.05, "grade"), 4, working) == pytest.approx(1.0)
    assert surviving_effect(pair(soft, "soften"), 4, working) < 0.3
    # solid marks keep their sign across a block, bright or dark alike: a paint-out's stages run
    for value in (4.0, 0.0):
        wire = linear.copy()
        wire[:, 30] = value
        assert surviving_effect(pair(wire, f"wire {value}"), 4, working) == pytest.approx(1.0)
    matte = [Pair(image, image[:, :, :1], "matte")]  # different channels: nothing to compare
    assert surviving_effect(matte, 4, working) is None
    assert surviving_effect([Pair(image, image, "nothing")], 4, working) is None


def paint_out(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A plate with four small bright marks (Input) and the clean plate (Ground Truth), linear light."""
    clean = fine_detail(size, seed)
    marked = clean.copy()
    for y, x in ((20, 20), (20, 90), (90, 30), (100, 100)):
        marked[y - 3 : y + 4, x - 3 : x + 4] = (0.9, 0.95, 0.3)
    return marked, clean


def test_local_share_tells_a_paint_out_from_a_grade():
    working = transfer.Transfer()
    marked, clean = paint_out(128, 1)
    paint = [Pair(working.to_working(marked), working.to_working(clean), "paint-out")]
    grade = [Pair(working.to_working(clean), working.to_working(clean * 1.2 + 0.05), "grade")]
    assert local_share(paint, working) == pytest.approx(1.0)
    assert local_share(grade, working) < 0.3
    assert local_share([Pair(paint[0].input, paint[0].input[:, :, :1], "matte")], working) is None


def test_a_local_effect_takes_its_coarse_stages_on_full_resolution_crops(tmp_path, batches, monkeypatch):
    for frame in (1, 2):
        marked, clean = paint_out(128, frame)
        imageio.write_frame(tmp_path / f"in.{frame:04d}.exr", marked, "rgb", pixel_type="float")
        imageio.write_frame(tmp_path / f"gt.{frame:04d}.exr", clean, "rgb", pixel_type="float")
    downscaled: list[int] = []
    real = train.downscale_pairs
    monkeypatch.setattr(train.loop, "downscale_pairs", lambda pairs, f, w: downscaled.append(f) or real(pairs, f, w))
    events: list[object] = []
    job = config(tmp_path / "job", input=str(tmp_path / "in.####.exr"), target=str(tmp_path / "gt.####.exr"))
    result = train_model(job, listeners=[events.append])
    assert input_shapes(batches) == [(2, 3, 32, 32)] * 2 + [(2, 3, 32, 32)] * 2 + [(2, 3, 64, 64)] * 6
    assert downscaled == []  # the crops come from the full-resolution pairs
    (started,) = [event for event in events if isinstance(event, Started)]
    assert (started.plan.stages, started.plan.stage_crops, started.plan.fine) == ((4, 2), True, False)
    assert "1/4 for steps 1-2 (32-pixel crops at full resolution)" in started.resolutions  # and says why
    assert catfile.read_manifest(result.model_path).training["multi_resolution"] == started.resolutions
    stop = threading.Event()  # and a run stopped inside a stage resumes into the same batches

    def stop_there(event: object) -> None:
        if isinstance(event, StepDone) and event.step == 3:
            stop.set()

    again = config(tmp_path / "again", input=job.input, target=job.target)
    first = Trainer(again, [stop_there], stop).run()
    assert first.losses + train_model(again, resume=True).losses == result.losses


def test_an_upscalers_detail_does_not_survive_downscaling():
    working = transfer.Transfer()
    truth = fine_detail(64)
    low = truth.reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))  # the Ground Truth's own ÷2
    pairs = [Pair(working.to_working(low), working.to_working(truth), "x2")]
    assert surviving_effect(pairs, 4, working) == pytest.approx(0.0, abs=1e-6)


def write_soften_pairs(directory: Path, frames: tuple[int, ...] = (1, 2)) -> dict[str, str]:
    """Pairs whose Ground Truth is a 2×2 box blur of fine detail: an effect tied to the pixel grid."""
    for frame in frames:
        image = fine_detail(128, seed=frame)
        soft = (image + np.roll(image, 1, 0) + np.roll(image, 1, 1) + np.roll(image, (1, 1), (0, 1))) / 4
        imageio.write_frame(directory / f"in.{frame:04d}.exr", image, "rgb", pixel_type="float")
        imageio.write_frame(directory / f"gt.{frame:04d}.exr", soft.astype(np.float32), "rgb", pixel_type="float")
    return {"input": str(directory / "in.####.exr"), "target": str(directory / "gt.####.exr")}


def test_a_pixel_scale_effect_trains_at_full_resolution_and_says_why(tmp_path, batches):
    events: list[object] = []
    job = config(tmp_path / "job", **write_soften_pairs(tmp_path))
    result = train_model(job, listeners=[events.append])
    assert input_shapes(batches) == [(2, 3, 64, 64)] * 10
    (started,) = [event for event in events if isinstance(event, Started)]
    assert (started.plan.stages, started.plan.fine) == ((), True)
    assert "of the effect survives it" in started.resolutions  # and says why
    manifest = catfile.read_manifest(result.model_path)
    assert manifest.training["multi_resolution"] == started.resolutions
    # ... and, being finer than every coarse stage, with the loss weighted toward full resolution
    assert (started.plan.level_weights, started.plan.repeat_weights) == ("pixels", "auto")
    assert manifest.config["level_weights"] == "pixels"
    assert manifest.training["level_weights_choice"].startswith("auto: pixels")
    assert "level_weights: auto" in (tmp_path / "job" / "run" / "config.yaml").read_text()  # repeats as asked
    # The same job refined from a model (as one refines the shipped networks): equal, pixels unmeasured there
    events.clear()
    refine = config(tmp_path / "refine", **write_soften_pairs(tmp_path), initial_weights=str(result.model_path))
    train_model(refine, listeners=[events.append])
    (started,) = [event for event in events if isinstance(event, Started)]
    assert started.plan.fine and started.plan.level_weights == "equal"


@pytest.mark.parametrize("size, weights", [("medium", "pixels"), ("large", "equal")])
def test_a_fine_effect_with_two_patches_per_step_takes_pixel_level_weights_up_to_medium(tmp_path, size, weights):
    events: list[object] = []
    job = config(tmp_path / "job", **write_soften_pairs(tmp_path), model_size=size)
    result = train_model(job, listeners=[events.append])
    (started,) = [event for event in events if isinstance(event, Started)]
    assert started.plan.fine and started.plan.stages == ()  # fine, as on Small above
    assert started.plan.level_weights == weights
    assert catfile.read_manifest(result.model_path).config["level_weights"] == weights


def test_fine_level_weights_are_taken_where_they_were_measured():
    small, medium, large = (MODEL_SIZES[size] for size in ("small", "medium", "large"))
    assert fine_level_weights(small, 2)[0] == fine_level_weights(medium, 2)[0] == "pixels"  # 2 per step: a CPU's
    assert fine_level_weights(small, 1)[0] == "pixels"
    assert fine_level_weights(small, 3) == (
        "doubling",
        "auto: doubling, the effect being finer than every coarse stage, with more than 2 patches per step",
    )
    assert fine_level_weights(medium, 3)[0] == "equal"  # doubling trained unstably there
    assert fine_level_weights(large, 2)[1].endswith("fine weights are unmeasured on this network with this batch")


def test_on_a_cpu_an_automatic_batch_for_a_fine_effect_is_two_patches(tmp_path, batches, monkeypatch):
    monkeypatch.setattr(train.plan, "AUTO_CPU_STEP_SECONDS", 1e9)  # the probe alone would take all three pairs
    events: list[object] = []
    pairs = write_soften_pairs(tmp_path, frames=(1, 2, 3))
    job = config(tmp_path / "job", **pairs, batch_size=None, steps=None, epochs=3, device="cpu")
    result = train_model(job, listeners=[events.append])
    (started,) = [event for event in events if isinstance(event, Started)]
    assert (started.plan.batch_size, started.plan.total_steps) == (2, 5)  # 3 epochs of 3 pairs, two per step
    assert "the probe alone would take 3: " in started.plan.batch_choice
    assert input_shapes(batches) == [(2, 3, 64, 64)] * 5
    training = catfile.load_cat(result.model_path).manifest.training
    assert training["batch_size"] == 2 and training["batch_size_choice"] == started.batch_choice

    # stopped after 2 steps and resumed where a new probe would take all three pairs: batch 2 and 5 steps again
    stop = threading.Event()

    def stop_there(event: object) -> None:
        if isinstance(event, StepDone) and event.step == 2:
            stop.set()

    again = config(tmp_path / "again", **pairs, batch_size=None, steps=None, epochs=3, device="cpu")
    first = Trainer(again, [stop_there], stop).run()
    events.clear()
    monkeypatch.setattr(train.plan, "FINE_EFFECT_CPU_BATCH", 1)  # so a new choice would differ from the kept one
    resumed = train_model(again, resume=True, listeners=[events.append])
    (started,) = [event for event in events if isinstance(event, Started)]
    assert (started.batch_size, started.total_steps, started.start_step) == (2, 5, 2)
    assert "kept from checkpoint.0000002.cat" in started.batch_choice
    assert started.plan.level_weights == "pixels"  # chosen again, as the checkpoint has it
    assert first.losses + resumed.losses == result.losses


@pytest.mark.parametrize("fine", [True, False])
def test_the_probes_batch_stays_where_stages_run_or_the_plan_is_off(tmp_path, monkeypatch, fine):
    monkeypatch.setattr(train.plan, "AUTO_CPU_STEP_SECONDS", 1e9)
    events: list[object] = []
    # a fine effect with multi-resolution off (the engine issue's trainer), or a grade, whose stages run
    frames = (1, 2, 3)
    pairs = (
        write_soften_pairs(tmp_path, frames)
        if fine
        else dict(zip(("input", "target"), write_pairs(tmp_path, 128, frames)))
    )
    job = config(tmp_path / "job", **pairs, batch_size=None, steps=10, multi_resolution=not fine, device="cpu")
    train_model(job, listeners=[events.append])
    (started,) = [event for event in events if isinstance(event, Started)]
    assert started.plan.batch_size == 3 and not started.plan.fine
    assert started.plan.stages == (() if fine else (4, 2))
    assert started.plan.level_weights == "equal"  # pixels is for a fine effect the plan has seen


def test_a_fine_effect_keeps_a_probe_batch_no_larger_than_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(
        train.plan, "AUTO_CPU_STEP_SECONDS", 1e9
    )  # the probe takes both pairs: 2, as a fine effect would
    events: list[object] = []
    job = config(tmp_path / "job", **write_soften_pairs(tmp_path), batch_size=None, steps=10, device="cpu")
    train_model(job, listeners=[events.append])
    (started,) = [event for event in events if isinstance(event, Started)]
    assert started.plan.fine and started.plan.batch_size == 2
    assert "finer than the coarse stages" not in started.plan.batch_choice  # the probe's own choice


def test_the_plan_is_in_the_log_and_the_manifest(tmp_path, capsys):
    from copycat_nuke.cli import main

    job = config(tmp_path)
    assert main(["train", "--config", str(save_yaml(job, tmp_path / "job.yaml")), "--device", "cpu"]) == 0
    said = capsys.readouterr().err
    plan = "1/4 for steps 1-2 (32-pixel crops, 100% of the effect survives); 1/2 for steps 3-4"
    assert f"multi-resolution: {plan}" in said and "loss level weights: equal (auto: equal)" in said
    manifest = catfile.read_manifest(tmp_path / "run" / "model.cat")
    assert manifest.training["multi_resolution"].startswith(plan)
    assert manifest.training["multi_resolution"].endswith("; then full resolution")


def test_downscaled_pairs_are_box_averages_in_linear_light():
    working = transfer.Transfer()
    linear = np.zeros((8, 6, 3), np.float32)
    linear[0::2, :] = 1.0  # alternate rows of 0 and 1 average to 0.5 in linear light
    pair = Pair(working.to_working(linear), working.to_working(linear * 2), "frame 1")
    (small,) = downscale_pairs([pair], 2, working)
    assert small.input.shape == (4, 3, 3) and small.target.shape == (4, 3, 3)
    np.testing.assert_allclose(working.from_working(small.input), 0.5, rtol=1e-5)
    np.testing.assert_allclose(working.from_working(small.target), 1.0, rtol=1e-5)


def test_early_steps_sample_smaller_crops_from_downscaled_frames(tmp_path, batches):
    train_model(config(tmp_path))
    assert input_shapes(batches) == [(2, 3, 32, 32)] * 4 + [(2, 3, 64, 64)] * 6


def test_frames_too_small_for_a_stage_stay_at_full_resolution(tmp_path, batches):
    source, truth = write_pairs(tmp_path, size=48)
    train_model(config(tmp_path / "x", input=source, target=truth, crop_size=32))
    assert input_shapes(batches) == [(2, 3, 32, 32)] * 10  # 48/4 and 48/2 are below 32 pixels: no coarse stages


@pytest.mark.parametrize("stop_after", [1, 3, 6])
def test_resume_across_stages_reproduces_the_uninterrupted_run(tmp_path, stop_after):
    whole = train_model(config(tmp_path / "a"))
    stop = threading.Event()

    def stop_there(event: object) -> None:
        if isinstance(event, StepDone) and event.step == stop_after:
            stop.set()

    job = config(tmp_path / "b")
    first = Trainer(job, [stop_there], stop).run()
    assert first.steps == stop_after
    resumed = train_model(job, resume=True)
    assert first.losses + resumed.losses == whole.losses


@pytest.mark.parametrize(
    ("flag", "expected"), [([], True), (["--multi-resolution"], True), (["--no-multi-resolution"], False)]
)
def test_the_command_line_switches_multi_resolution(flag, expected):
    from copycat_nuke.cli import _train_config, build_parser

    args = build_parser().parse_args(["train", "--input", "a.####.exr", "--target", "b.####.exr", "--out", "o", *flag])
    assert _train_config(args).multi_resolution is expected


def test_an_upscaler_with_odd_frame_sizes_trains_at_every_stage(tmp_path, batches):
    rng = np.random.default_rng(8)
    for frame in (1, 2):  # an upscale with a grade: an effect that survives the stages' downscaling
        plate = rng.random((34, 26, 3), dtype=np.float32).repeat(8, 0).repeat(8, 1)[:270, :202]
        imageio.write_frame(tmp_path / f"lo.{frame:04d}.exr", plate[::2, ::2], "rgb", pixel_type="float")
        graded = plate * np.array([0.7, 1.0, 1.3], np.float32)
        imageio.write_frame(tmp_path / f"hi.{frame:04d}.exr", graded, "rgb", pixel_type="float")
    job = config(
        tmp_path / "job", input=str(tmp_path / "lo.####.exr"), target=str(tmp_path / "hi.####.exr"), crop_size=64
    )
    train_model(job)  # 135×101 Inputs: ÷4 is 33×25 (skipped, under 32), ÷2 is 67×50 with a 134×100 Ground Truth
    full, half = ((2, 3, 64, 64), (2, 3, 128, 128)), ((2, 3, 32, 32), (2, 3, 64, 64))
    assert batches == [full] * 2 + [half] * 2 + [full] * 6


def test_auto_on_the_command_line_overrides_a_batch_size_from_the_config(tmp_path):
    from copycat_nuke.cli import _train_config, build_parser
    from copycat_nuke.config import save_yaml

    save_yaml(TrainConfig(input="a.####.exr", target="b.####.exr", out="o", batch_size=3), tmp_path / "job.yaml")
    args = build_parser().parse_args(["train", "--config", str(tmp_path / "job.yaml"), "--batch-size", "auto"])
    assert _train_config(args).batch_size is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--batch-size", "0"])
