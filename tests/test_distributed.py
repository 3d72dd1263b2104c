"""Distributed training: real processes on loopback (gloo), Nuke's variables, torchrun, a dying rank."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import read_losses, tiny_config
from safetensors.torch import load_file

from copycat_nuke import catfile
from copycat_nuke.config import save_yaml
from copycat_nuke.distributed import context_from_environment
from copycat_nuke.errors import ConfigError
from copycat_nuke.train import train_model

WORKER = Path(__file__).with_name("ddp_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rank_environment(rank: int, port: int, world_size: int = 2, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(
        COPYCAT_MAIN_ADDR="127.0.0.1",
        COPYCAT_MAIN_PORT=str(port),
        COPYCAT_RANK=str(rank),
        COPYCAT_WORLD_SIZE=str(world_size),
        COPYCAT_TIMEOUT="60",
        OMP_NUM_THREADS="1",
        **extra,
    )
    return env


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_stray_processes():
    """Whatever a test started (ranks, torchrun and its workers) is killed when it ends, pass or fail."""
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            # torchrun starts its workers in sessions of their own: kill them by ancestry, then the launcher
            for pid in _descendants(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc; Linux only, like these tests' loopback set-up)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            found += [int(child), *_descendants(int(child))]
    return found


def launch(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    _STARTED.append(process)
    return process


def start_ranks(tmp_path: Path, config_path: Path, **extra: str) -> list[subprocess.Popen[str]]:
    port = free_port()
    return [
        launch(
            [sys.executable, str(WORKER), str(config_path), str(tmp_path / f"rank{rank}.safetensors")],
            rank_environment(rank, port, **extra),
        )
        for rank in range(2)
    ]


def workers_said(err: str) -> str:
    """A failed run's stderr without torchrun's own report, which would bury what the ranks printed."""
    own = err.find("torch.distributed.elastic.multiprocessing.errors.ChildFailedError")
    report = err[own:] if own >= 0 else ""
    said = err[:own] if own >= 0 else err
    return said[-6000:] + "\n" + report[-1500:]


def finish(processes: list[subprocess.Popen[str]], timeout: float = 300) -> list[tuple[int, str]]:
    results = []
    for process in processes:
        _, err = process.communicate(timeout=timeout)
        results.append((process.returncode, err))
    return results


def test_nuke_variables_are_aliases_for_torchrun_ones():
    context = context_from_environment(
        {"COPYCAT_MAIN_ADDR": "farm01", "COPYCAT_RANK": "3", "COPYCAT_WORLD_SIZE": "4", "COPYCAT_SYNC_INTERVAL": "8"}
    )
    assert (context.rank, context.world_size, context.sync_interval, context.is_main) == (3, 4, 8, False)
    assert context_from_environment({"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "a", "COPYCAT_RANK": "0"}).rank == 1
    assert not context_from_environment({}).enabled


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"COPYCAT_WORLD_SIZE": "2", "COPYCAT_RANK": "2", "COPYCAT_MAIN_ADDR": "a"}, "must be below"),
        ({"COPYCAT_WORLD_SIZE": "two"}, "COPYCAT_WORLD_SIZE|WORLD_SIZE"),
        ({"COPYCAT_WORLD_SIZE": "2"}, "main node's address"),
    ],
)
def test_bad_distributed_variables_are_named(environ, fragment):
    with pytest.raises(ConfigError, match=fragment):
        context_from_environment(environ)


def test_two_ranks_train_one_network_and_rank_zero_alone_writes(tmp_path):
    config = tiny_config(tmp_path, steps=4, checkpoint_interval=2, image_interval=2)
    config_path = save_yaml(config, tmp_path / "job.yaml")
    results = finish(start_ranks(tmp_path, config_path))
    assert [code for code, _ in results] == [0, 0], results
    weights = [load_file(tmp_path / f"rank{rank}.safetensors") for rank in range(2)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints",
        "config.yaml",
        "contact_sheets",
        "loss.csv",
        "loss.png",
        "model.cat",
    ]
    assert [line.split(",")[0] for line in (run / "loss.csv").read_text().splitlines()] == ["step", "1", "2", "3", "4"]
    assert len(list((run / "checkpoints").glob("*.cat"))) == 2
    assert torch.equal(catfile.load_cat(run / "model.cat").weights["out.weight"], weights[0]["out.weight"])
    # a checkpoint from the distributed run resumes in a single process
    resumed = train_model(config, steps=6, resume=True)
    assert resumed.steps == 6


def test_a_single_process_checkpoint_resumes_on_two_ranks(tmp_path):
    single = train_model(tiny_config(tmp_path, steps=3, checkpoint_interval=3), steps=3)
    assert single.steps == 3
    config = tiny_config(tmp_path, steps=6, checkpoint_interval=3, resume=True)
    results = finish(start_ranks(tmp_path, save_yaml(config, tmp_path / "job.yaml")))
    assert [code for code, _ in results] == [0, 0], results
    weights = [load_file(tmp_path / f"rank{rank}.safetensors") for rank in range(2)]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    run = tmp_path / "run"
    # the log reads as one run: the single process's steps 1-3 (kept, not retrained), then the ranks' 4-6
    losses = read_losses(run / "loss.csv")
    assert [round(loss, 5) for _, loss in losses[:3]] == [round(loss, 5) for loss in single.losses]
    assert [line.split(",")[0] for line in (run / "loss.csv").read_text().splitlines()] == [
        "step",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
    ]
    manifest = catfile.read_manifest(run / "model.cat")
    assert manifest.training["steps"] == 6
    assert torch.equal(catfile.load_cat(run / "model.cat").weights["out.weight"], weights[0]["out.weight"])


def test_weights_averaged_every_sync_interval_end_identical(tmp_path):
    config_path = save_yaml(tiny_config(tmp_path, steps=5), tmp_path / "job.yaml")
    results = finish(start_ranks(tmp_path, config_path, COPYCAT_SYNC_INTERVAL="2"))
    assert [code for code, _ in results] == [0, 0], results
    weights = [load_file(tmp_path / f"rank{rank}.safetensors") for rank in range(2)]
    assert all(torch.allclose(weights[0][name], weights[1][name]) for name in weights[0])


def test_torchrun_launches_copycat_train(tmp_path):
    config_path = save_yaml(tiny_config(tmp_path, steps=3), tmp_path / "job.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COPYCAT_")}
    env.update(OMP_NUM_THREADS="1", COPYCAT_TIMEOUT="60")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command += [
        "--master-port",
        str(free_port()),
        "-m",
        "copycat_nuke",
        "train",
        "--config",
        str(config_path),
        "--quiet",
    ]
    ((code, err),) = finish([launch(command, env)])
    assert code == 0, workers_said(err)
    assert catfile.read_manifest(tmp_path / "run" / "model.cat").training["steps"] == 3


def test_a_killed_rank_makes_the_other_exit_with_a_clear_error(tmp_path):
    config_path = save_yaml(
        tiny_config(tmp_path, steps=100_000, image_interval=10**6, checkpoint_interval=10**6), tmp_path / "job.yaml"
    )
    processes = start_ranks(tmp_path, config_path)
    log = tmp_path / "run" / "loss.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not log.exists() or log.read_text().count("\n") < 2):
        time.sleep(0.2)  # wait until training runs (rows are flushed every 50 steps)
    processes[1].send_signal(signal.SIGKILL)
    started = time.monotonic()
    _, err = processes[0].communicate(timeout=90)
    assert processes[0].returncode == 2, workers_said(err)
    assert "lost contact with the other training processes" in err
    assert time.monotonic() - started < 90
    processes[1].wait()
