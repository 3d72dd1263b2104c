"""Run directories that cannot be clobbered: a second run, a concurrent trainer, a crash, a damaged or
altered checkpoint, leftovers of a killed run (issue #21's trainer items). Tiny pairs, Small, few steps."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import read_losses, tiny_config

from copycat_nuke import catfile, errors, rundir
from copycat_nuke.cli import main
from copycat_nuke.errors import CatFileError, RunInUseError
from copycat_nuke.train import StepDone, Trainer, train_model


def train_args(config_dir: Path, *extra: str) -> list[str]:
    config = tiny_config(config_dir)
    return [
        "train",
        "--input", config.input,
        "--target", config.target,
        "--out", config.out,
        "--steps", "4",
        "--model-size", "small",
        "--batch-size", "2",
        "--crop-size", "32",
        "--checkpoint-interval", "2",
        "--precision", "fp32",
        "--quiet",
        *extra,
    ]  # fmt: skip


def test_a_second_run_into_a_run_directory_is_refused_and_new_run_goes_beside_it(tmp_path, capsys):
    assert main(train_args(tmp_path)) == 0
    run = tmp_path / "run"
    before = {path.name: path.read_bytes() for path in (run / "model.cat", run / "loss.csv", run / "config.yaml")}

    assert main(train_args(tmp_path)) == errors.EXIT_USAGE
    message = capsys.readouterr().err
    assert "already holds a run: add --resume to go on with it, or --new-run" in message and message[-1] == "\n"
    assert {name: (run / name).read_bytes() for name in before} == before  # nothing touched

    assert main(train_args(tmp_path, "--new-run")) == 0
    assert (run / "run_001" / "model.cat").is_file()
    assert {name: (run / name).read_bytes() for name in before} == before
    assert main(train_args(tmp_path, "--new-run", "--resume")) == errors.EXIT_USAGE


def test_a_run_directory_being_trained_into_is_refused_and_a_dead_trainers_lock_is_taken_over(tmp_path):
    config = tiny_config(tmp_path, steps=2)
    run = Path(config.out)
    run.mkdir(parents=True)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = f'{{"pid": {alive.pid}, "host": "{socket.gethostname()}", "since": "now"}}'
        (run / rundir.LOCK).write_text(lock)
        with pytest.raises(RunInUseError, match=f"being trained into by process {alive.pid}"):
            train_model(config)
        assert not (run / "loss.csv").exists()
    finally:
        alive.kill()
        alive.wait()
    with pytest.warns(UserWarning, match="taking over"):
        train_model(config)  # the holder is gone: its lock is stale
    assert (run / "model.cat").is_file() and not (run / rundir.LOCK).exists()


def test_a_crash_keeps_every_logged_step_up_to_the_checkpoint_and_resume_logs_each_step_once(tmp_path):
    config = tiny_config(tmp_path, steps=8, checkpoint_interval=2, image_interval=100)

    def crash(event: object) -> None:
        if isinstance(event, StepDone) and event.step == 5:
            raise RuntimeError("the machine went down")

    with pytest.raises(RuntimeError):
        Trainer(config, [crash]).run()
    run = Path(config.out)
    assert [step for step, _ in read_losses(run / "loss.csv")] == [1, 2, 3, 4]  # flushed with checkpoint 4
    assert not (run / rundir.LOCK).exists()
    train_model(config, resume=True)
    assert [step for step, _ in read_losses(run / "loss.csv")] == list(range(1, 9))


def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(tmp_path):
    config = tiny_config(tmp_path, steps=6, checkpoint_interval=2)
    train_model(config, steps=4)
    run = Path(config.out)
    newest = rundir.latest_checkpoint(run)
    assert newest is not None and newest.name == "checkpoint.0000004.cat"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a copy cut short
    with pytest.warns(UserWarning, match=r"resuming from checkpoint.0000002.cat: the newer checkpoint"):
        result = train_model(config, resume=True)
    assert result.steps == 6
    assert [step for step, _ in read_losses(run / "loss.csv")] == list(range(1, 7))


def test_a_checkpoint_claiming_a_step_past_the_job_is_refused(tmp_path):
    config = tiny_config(tmp_path, steps=4, checkpoint_interval=2)
    train_model(config, steps=2)
    run = Path(config.out)
    path = rundir.latest_checkpoint(run)
    assert path is not None
    cat = catfile.load_cat(path)
    assert cat.resume is not None
    altered = replace(cat.manifest, training={**cat.manifest.training, "steps": 10**12})
    catfile.save_cat(path, altered, cat.weights, replace(cat.resume, step=10**12))
    with pytest.raises(CatFileError, match="is at step 1000000000000, past this job's 4 steps"):
        train_model(config, resume=True)
    assert catfile.read_manifest(run / "model.cat").training["steps"] == 2  # model.cat untouched


def test_leftovers_of_a_killed_run_are_removed_and_a_failed_run_leaves_no_empty_folders(tmp_path):
    config = tiny_config(tmp_path, steps=2)
    run = Path(config.out)
    (run / "checkpoints").mkdir(parents=True)
    leftovers = [run / ".model.cat.x1y2.tmp", run / "checkpoints" / ".checkpoint.0000002.cat.abc.tmp"]
    for path in leftovers:
        path.write_bytes(b"")
    train_model(config)
    assert not any(path.exists() for path in leftovers)

    broken = tiny_config(tmp_path / "b", steps=2)
    broken = replace(broken, target=str(tmp_path / "b" / "missing.####.exr"))
    with pytest.raises(errors.TrainingInputError):
        train_model(broken)
    assert sorted(p.name for p in Path(broken.out).iterdir()) == []


def test_pruning_keeps_the_newest_checkpoints_by_step_past_ten_million(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for step in (9_999_998, 9_999_999, 10_000_000, 10_000_001):
        rundir.checkpoint_path(tmp_path, step).write_bytes(b"")
    rundir.prune_checkpoints(tmp_path, keep=3)
    assert [step for step, _ in rundir.checkpoints(tmp_path)] == [9_999_999, 10_000_000, 10_000_001]
    assert rundir.latest_checkpoint(tmp_path) == rundir.checkpoint_path(tmp_path, 10_000_001)


def test_run_files_are_readable_by_other_users(tmp_path):
    config = tiny_config(tmp_path, steps=2)
    train_model(config)
    run = Path(config.out)
    for name in ("config.yaml", "loss.csv", "model.cat"):
        assert (run / name).stat().st_mode & 0o044 == 0o044, name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert os.access(run / "loss.csv", os.R_OK)


def test_a_run_killed_before_its_first_checkpoint_can_be_started_again(tmp_path):
    config = tiny_config(tmp_path, steps=2)
    run = Path(config.out)
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("input: x\n")  # what a run killed at step 1 leaves: nothing to resume
    (run / "loss.csv").write_text("step,loss,learning_rate,seconds\n1,0.1,0.0005,1.0\n")
    assert not rundir.holds_run(run)
    train_model(config)
    assert (run / "model.cat").is_file() and rundir.holds_run(run)
