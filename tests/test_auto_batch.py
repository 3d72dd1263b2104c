"""--batch-size auto: a probe picks the batch, it is reported, and a resumed run keeps it."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from copycat_nuke import catfile, imageio, train
from copycat_nuke.config import TrainConfig
from copycat_nuke.device import resolve_runtime
from copycat_nuke.distributed import DistributedContext, min_over_ranks
from copycat_nuke.models import build_model, msrn_arguments
from copycat_nuke.train import Started, StepDone, Trainer, auto_batch_size, train_model


def job(directory: Path, **overrides: object) -> TrainConfig:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    for frame in (1, 2, 3):
        image = rng.random((6, 8, 3), dtype=np.float32).repeat(8, 0).repeat(8, 1)
        imageio.write_frame(directory / f"in.{frame:04d}.exr", image, "rgb", pixel_type="float")
        imageio.write_frame(directory / f"gt.{frame:04d}.exr", image * 0.6, "rgb", pixel_type="float")
    settings: dict[str, object] = dict(
        input=str(directory / "in.####.exr"),
        target=str(directory / "gt.####.exr"),
        out=str(directory / "run"),
        steps=6,
        model_size="small",
        crop_size=32,
        checkpoint_interval=100,
        image_interval=100,
        precision="fp32",
        seed=2,
    )
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(("step_seconds", "expected"), [(1e9, 3), (1e-9, 1)])
def test_a_cpu_batch_is_what_keeps_a_step_short_and_never_more_than_the_pairs(monkeypatch, step_seconds, expected):
    monkeypatch.setattr(train.plan, "AUTO_CPU_STEP_SECONDS", step_seconds)
    model = build_model("msrn", msrn_arguments("small"))
    batch, how = auto_batch_size(model, resolve_runtime("cpu", "fp32"), 3, 3, 32, 1, pairs=3)
    assert batch == expected
    assert "s per 32² patch on cpu" in how and "3 pair(s)" in how
    assert all(p.grad is None for p in model.parameters())  # the probe leaves no gradients behind


def test_the_probe_leaves_the_weights_and_the_random_stream_alone():
    model = build_model("msrn", msrn_arguments("small", scale=2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    auto_batch_size(model, resolve_runtime("cpu", "fp32"), 3, 3, 32, 2, pairs=2)
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_auto_batch_is_reported_in_the_events_and_the_manifest(tmp_path, monkeypatch):
    monkeypatch.setattr(train.plan, "AUTO_CPU_STEP_SECONDS", 1e9)
    events: list[object] = []
    result = train_model(job(tmp_path), listeners=[events.append])
    started = next(e for e in events if isinstance(e, Started))
    assert started.batch_size == 3 and started.batch_choice.startswith("auto: ")
    training = catfile.load_cat(result.model_path).manifest.training
    assert training["batch_size"] == 3 and training["batch_size_choice"] == started.batch_choice


def test_a_set_batch_size_is_used_as_it_is(tmp_path):
    events: list[object] = []
    train_model(job(tmp_path, batch_size=2), listeners=[events.append])
    started = next(e for e in events if isinstance(e, Started))
    assert (started.batch_size, started.batch_choice) == (2, "set")


def test_resume_keeps_the_automatic_batch_of_the_run_it_continues(tmp_path, monkeypatch):
    monkeypatch.setattr(train.plan, "AUTO_CPU_STEP_SECONDS", 1e9)  # the probe picks 3 (all pairs)
    whole = train_model(job(tmp_path / "a"))
    stop = threading.Event()

    def stop_at_three(event: object) -> None:
        if isinstance(event, StepDone) and event.step == 3:
            stop.set()

    config = job(tmp_path / "b")
    first = Trainer(config, [stop_at_three], stop).run()
    monkeypatch.setattr(train.plan, "AUTO_CPU_STEP_SECONDS", 1e-9)  # a new probe would now pick 1
    events: list[object] = []
    resumed = train_model(config, resume=True, listeners=[events.append])
    started = next(e for e in events if isinstance(e, Started))
    assert started.batch_size == 3 and "kept from checkpoint.0000003.cat" in started.batch_choice
    assert first.losses + resumed.losses == whole.losses


def test_the_command_line_takes_auto_or_a_number():
    from copycat_nuke.cli import _train_config, build_parser

    base = ["train", "--input", "a.####.exr", "--target", "b.####.exr", "--out", "o"]
    assert _train_config(build_parser().parse_args([*base, "--batch-size", "auto"])).batch_size is None
    assert _train_config(build_parser().parse_args([*base, "--batch-size", "3"])).batch_size == 3


def test_alone_the_smallest_over_ranks_is_the_value_itself():
    assert min_over_ranks(DistributedContext(), 5, torch.device("cpu")) == 5
