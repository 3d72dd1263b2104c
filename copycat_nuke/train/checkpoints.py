"""Checkpoints and model.cat: what a run writes to resume exactly, and reading it back on resume."""

from __future__ import annotations

import time
import warnings
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch
from torch import nn

from copycat_nuke import __version__, catfile, imageio, rundir
from copycat_nuke.config import TrainConfig, to_dict
from copycat_nuke.data import PatchSampler
from copycat_nuke.device import describe_hardware
from copycat_nuke.errors import CatFileError, TrainingError
from copycat_nuke.gradients import GradientGuard
from copycat_nuke.train.plan import Resuming

if TYPE_CHECKING:
    from copycat_nuke.train.loop import RunContext


def checkpoint_to_resume(out_dir: Path) -> Resuming:
    """The newest checkpoint in ``out_dir`` that loads, and its manifest; a damaged newer one (a disk that
    filled up, a copy cut short) is skipped with a warning. A TrainingError when there is none."""
    found = rundir.checkpoints(out_dir)
    if not found:
        raise TrainingError(f"nothing to resume in {out_dir}: no checkpoints/checkpoint.*.cat; start a new run instead")
    problems = []
    for _, path in reversed(found):
        try:
            cat = catfile.load_cat(path)
        except CatFileError as error:
            problems.append(str(error))
            continue
        if problems:
            warnings.warn(
                f"resuming from {path.name}: the newer checkpoint(s) could not be loaded ({'; '.join(problems)})",
                stacklevel=2,
            )
        return Resuming(path, cat.manifest, cat)
    raise CatFileError(f"no checkpoint in {out_dir / rundir.CHECKPOINTS} can be loaded: {'; '.join(problems)}")


def restore(
    checkpoint_path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    sampler: PatchSampler,
    arguments: dict[str, Any],
    guard: GradientGuard,
    loaded: Optional[catfile.CatFile] = None,
) -> int:
    """Load a checkpoint's weights, optimizer, sampler and random state and gradient guard into a run that
    has the same network; returns its step. State that does not fit is a CatFileError naming the file."""
    cat = loaded if loaded is not None else catfile.load_cat(checkpoint_path)
    if cat.resume is None:
        raise CatFileError(f"{checkpoint_path} has no resume state (it is a model, not a checkpoint)")
    saved = catfile.complete_arguments("msrn", cat.manifest.arguments) if cat.manifest.architecture == "msrn" else {}
    if cat.manifest.architecture != "msrn" or saved != catfile.complete_arguments("msrn", arguments):
        raise CatFileError(
            f"{checkpoint_path} is a different network ({cat.manifest.arguments}) from this job's "
            f"({arguments}): resume with the settings it was trained with, or start a new run"
        )
    step = cat.resume.step
    recorded = cat.manifest.training.get("steps")
    if not isinstance(step, int) or step < 0 or (recorded is not None and recorded != step):
        raise CatFileError(
            f"{checkpoint_path} says it is at step {step} but its manifest says {recorded}: the file was altered; "
            "resume from another checkpoint or start a new run"
        )
    try:
        model.load_state_dict(cat.weights)
        optimizer.load_state_dict(cat.resume.optimizer)
        sampler.load_state_dict(cat.resume.rng["sampler"])
        if isinstance(cat.resume.rng.get("torch"), torch.Tensor):
            torch.set_rng_state(cat.resume.rng["torch"])
    except (KeyError, TypeError, ValueError, RuntimeError, TrainingError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CatFileError(
            f"{checkpoint_path}: its resume state does not fit this run ({reason}); resume from another "
            "checkpoint or start a new run"
        ) from None
    guard_state = cat.resume.extra.get("gradient_guard")  # absent from checkpoints before the guard
    if guard_state is not None:
        try:
            if not isinstance(guard_state, dict):
                raise ValueError(f"gradient guard state: expected a mapping, found {type(guard_state).__name__}")
            guard.load_state_dict(guard_state)
        except ValueError as error:
            raise CatFileError(f"{checkpoint_path}: {error}; start a new run") from error
    return step


def manifest(
    config: TrainConfig, run: RunContext, step: int, final_loss: float, clock: float, kind: str
) -> catfile.Manifest:
    """The manifest of a checkpoint or model written at ``step``: how it was made, for resume and for people."""
    cfg = config
    return catfile.Manifest(
        architecture="msrn",
        arguments=run.arguments,
        channels_in=run.data.channels_in,
        channels_out=run.data.channels_out,
        transfer=run.working.to_dict(),
        scale=int(run.arguments.get("scale", 1)),
        kind=kind,
        training={
            "steps": step,
            "total_steps": run.plan.total_steps,
            "final_loss": final_loss,
            "seconds": round(time.perf_counter() - clock, 3),
            "device": run.runtime.describe(),
            "precision": run.runtime.precision,
            "batch_size": run.plan.batch_size,
            "batch_size_choice": run.plan.batch_choice,
            "level_weights_choice": run.plan.weights_choice,
            "gradient_clipped_steps": run.guard.clipped,
            "multi_resolution": run.plan.resolutions,
            "crop_size": run.stage_samplers[1].crop_size,
            "source_frames": imageio.format_frame_list(run.data.frames),
            "input": cfg.input,
            "target": cfg.target,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "copycat_version": __version__,
            "torch_version": str(torch.__version__),
            "hardware": describe_hardware(run.runtime.device),
        },
        config=to_dict(  # as chosen
            replace(
                cfg,
                batch_size=run.plan.batch_size,
                level_weights=run.plan.level_weights,
                gradient_clip=run.guard.factor,
            )
        ),
    )


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    # contiguous fp32 CPU copies: channels_last tensors are strided views safetensors cannot store
    return {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}


def write_checkpoint(config: TrainConfig, out_dir: Path, run: RunContext, step: int, loss: float, clock: float) -> Path:
    """A checkpoint at ``step`` with everything needed to resume exactly; older ones beyond
    :data:`rundir.KEEP_CHECKPOINTS` are removed."""
    path = rundir.checkpoint_path(out_dir, step)
    resume = catfile.ResumeState(
        step=step,
        optimizer=run.optimizer.state_dict(),
        scheduler={"kind": "cosine", "base_lr": config.learning_rate, "step": step},
        rng={"sampler": run.sampler.state_dict(), "torch": torch.get_rng_state()},
        extra={"loss": loss, "gradient_guard": run.guard.state_dict()},
    )
    catfile.save_cat(path, manifest(config, run, step, loss, clock, "checkpoint"), weights(run.model), resume)
    rundir.prune_checkpoints(out_dir)
    return path


def write_model(config: TrainConfig, out_dir: Path, run: RunContext, step: int, loss: float, clock: float) -> Path:
    """``model.cat``: the network and how it was made, without the resume state."""
    path = out_dir / rundir.MODEL
    catfile.save_cat(path, manifest(config, run, step, loss, clock, "model"), weights(run.model))
    return path
