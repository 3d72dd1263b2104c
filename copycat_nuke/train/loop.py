"""The training loop: :class:`Trainer` reads prepare -> plan -> loop -> finish.

1. **prepare**: validate the job, decide device and precision, read the frame pairs into the working
   space of ``transfer.py``, build (or load) the network, find the checkpoint to resume from;
2. **plan**: batch size, multi-resolution stages, level weights, gradient guard (:mod:`.plan`);
3. **loop**: sample patches, a multi-scale Charbonnier loss, Adam with a cosine-decaying learning rate
   (:mod:`.loss`); every step an event, every ``image_interval`` steps a contact sheet, every
   ``checkpoint_interval`` steps a checkpoint (:mod:`.checkpoints`); a run whose loss blows up stops;
4. **finish**: a checkpoint, ``model.cat``, the loss log and its plot, also when stopped early.

The trainer never touches a UI: it publishes plain events (:mod:`.events`) to listeners. Stopping is a
``threading.Event``, honoured within one step, and always leaves a valid checkpoint and model.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from copycat_nuke import catfile, distributed, plots, pretrained, rundir, transfer
from copycat_nuke.config import TrainConfig, save_yaml
from copycat_nuke.data import PatchSampler, TrainingData, load_pairs
from copycat_nuke.device import Runtime, resolve_runtime
from copycat_nuke.errors import CatFileError, ConfigError, RunInUseError, TrainingDivergedError, TrainingError
from copycat_nuke.gradients import GradientGuard
from copycat_nuke.models import build_model, msrn_arguments
from copycat_nuke.train import checkpoints, loss, plan, previews
from copycat_nuke.train.events import (
    CheckpointWritten,
    ContactSheetWritten,
    Event,
    Finished,
    Listener,
    Started,
    StepDone,
    TrainResult,
)
from copycat_nuke.train.loss import learning_rate, multiscale_loss
from copycat_nuke.train.plan import MULTI_RESOLUTION_MIN_SIDE, downscale_pairs, resolution_factor

#: A run has *diverged* (and stops with a TrainingError) when its loss stays over DIVERGENCE_FACTOR × the
#: lowest median it has had over DIVERGENCE_WINDOW steps for DIVERGENCE_STEPS steps in a row: 100× is a result
#: far worse than the network had reached (docs/decisions.md, "Divergence check").
DIVERGENCE_FACTOR = 100.0
DIVERGENCE_WINDOW = 100
DIVERGENCE_STEPS = 20


class Trainer:
    """Trains one CopyCat job. Build it with a :class:`TrainConfig`, then call :meth:`run`.

    Args:
        config: the job.
        listeners: called with every event, on the training thread (keep them quick; hand work to a
            queue for UI threads).
        stop: set it from any thread to stop within one step; the run then writes a checkpoint and
            ``model.cat`` and returns.
        context: the distributed run this process belongs to; by default read from the environment
            (torchrun's variables or Nuke's ``COPYCAT_*``), a single process otherwise.
    """

    def __init__(
        self,
        config: TrainConfig,
        listeners: Iterable[Listener] = (),
        stop: Optional[threading.Event] = None,
        context: Optional[distributed.DistributedContext] = None,
    ) -> None:
        self.config = replace(config).validate()
        self.listeners = list(listeners)
        self.stop_event = stop or threading.Event()
        self.out_dir = Path(config.out) if config.out else Path()
        #: this process's place in a torchrun / COPYCAT_* distributed run (rank 0 of 1 when alone)
        self.dist = context or distributed.context_from_environment()
        #: the network being trained (set by :meth:`run`)
        self.model: Optional[nn.Module] = None

    def stop(self) -> None:
        """Ask the run to stop after the current step."""
        self.stop_event.set()

    def _emit(self, event: Event) -> None:
        if not self.dist.is_main:
            return
        for listener in self.listeners:
            listener(event)

    # ---------------------------------------------------------------------------- prepare
    def _prepare_out_dir(self) -> rundir.RunLock:
        """Take the run directory (its lock), check that a new run does not replace an old one, and clear what
        a killed run left there. Returns the lock, held until the run ends."""
        if not self.config.out:
            raise ConfigError("training needs an output directory (--out DIR / dataDirectory)")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            lock = rundir.RunLock(self.out_dir).acquire()
        except OSError as error:
            raise TrainingError(
                f"cannot write to the output directory {self.out_dir}: {error.strerror or error}; "
                "choose a directory you can write to"
            ) from None
        try:
            if not self.config.resume and rundir.holds_run(self.out_dir):
                raise RunInUseError(
                    f"{self.out_dir} already holds a run: add --resume to go on with it, or --new-run to start a "
                    f"new one beside it (in {rundir.new_run_dir(self.out_dir)})"
                )
            rundir.remove_leftovers(self.out_dir)
            (self.out_dir / rundir.CHECKPOINTS).mkdir(exist_ok=True)
            (self.out_dir / rundir.CONTACT_SHEETS).mkdir(exist_ok=True)
        except BaseException:
            lock.release()
            raise
        return lock

    def _clean_up_failed_run(self) -> None:
        """A run that failed before writing anything leaves no empty folders behind."""
        for name in (rundir.CHECKPOINTS, rundir.CONTACT_SHEETS):
            with contextlib.suppress(OSError):  # not empty, or gone: left as it is
                (self.out_dir / name).rmdir()

    def _build_network(self, data: TrainingData) -> tuple[nn.Module, dict[str, Any], Optional[catfile.CatFile]]:
        """The network to train: fresh, or from initial weights (a .cat model or checkpoint)."""
        cfg = self.config
        arguments = msrn_arguments(
            cfg.model_size,
            len(data.channels_in),
            len(data.channels_out),
            lstm=cfg.lstm,
            scale=data.scale,
            temporal=cfg.temporal,
        )
        initial: Optional[catfile.CatFile] = None
        source = pretrained.resolve_initial_weights(cfg.initial_weights)
        if source is not None:
            initial = catfile.load_cat(source)
            arguments = self._check_compatible(initial, arguments, source)
        torch.manual_seed(cfg.seed)
        model = build_model("msrn", arguments)
        if initial is not None:
            model.load_state_dict(initial.weights)
        return model, arguments, initial

    @staticmethod
    def _check_compatible(cat: catfile.CatFile, wanted: dict[str, Any], source: Union[str, Path]) -> dict[str, Any]:
        """Initial weights decide the network's size; its channel counts must fit the job's."""
        manifest = cat.manifest
        if manifest.architecture != "msrn":
            raise CatFileError(
                f"{source} holds a {manifest.architecture!r} network; CopyCat trains 'msrn' networks: "
                "choose another file or set initial weights to None"
            )
        have = manifest.arguments
        for key, what in (("in_channels", "Input"), ("out_channels", "Ground Truth")):
            if have.get(key) != wanted[key]:
                raise CatFileError(
                    f"{source} was trained for {have.get(key)} {what} channel(s) but this job has "
                    f"{wanted[key]}: match channels_in/channels_out to the file, or start without initial weights"
                )
        have_scale, want_scale = have.get("scale", 1), wanted.get("scale", 1)
        if have_scale != want_scale:
            job = "the same size" if want_scale == 1 else f"{want_scale}× its Input"
            raise CatFileError(
                f"{source} is a ×{have_scale} network but this job's Ground Truth is {job}: "
                f"for a ×{have_scale} network give Ground Truth frames {have_scale}× the Input's size, "
                "or start without initial weights"
            )
        have_temporal, want_temporal = have.get("temporal", 0), wanted.get("temporal", 0)
        if have_temporal != want_temporal:
            raise CatFileError(
                f"{source} sees {have_temporal} neighbouring frame(s) on each side but this job asks for "
                f"temporal {want_temporal}: set temporal to {have_temporal}, or start without initial weights"
            )
        return dict(have)

    # ------------------------------------------------------------------------------ run
    def run(self) -> TrainResult:
        """Train to the end (or until stopped) and return what was written. Blocks.

        prepare (pairs, network, device) -> plan (:func:`~copycat_nuke.train.plan.make_plan`) -> loop
        (:meth:`_train`) -> finish (checkpoint, model.cat, loss plot)."""
        lock = self._prepare_out_dir() if self.dist.is_main else None
        try:
            return self._run()
        except BaseException:
            if lock is not None:
                self._clean_up_failed_run()
            raise
        finally:
            if lock is not None:
                lock.release()

    def _run(self) -> TrainResult:
        cfg = self.config
        clock = time.perf_counter()
        working = transfer.Transfer()
        data = load_pairs(cfg, working)
        if cfg.batch_size is not None and cfg.batch_size > len(data.pairs):
            raise TrainingError(
                f"batch size {cfg.batch_size} is larger than the {len(data.pairs)} training pair(s): lower the "
                f"batch size to {len(data.pairs)} or less (or auto), or add more Input/Ground Truth frames"
            )
        runtime = resolve_runtime(cfg.device, cfg.precision)
        runtime = replace(runtime, device=distributed.local_device(self.dist, runtime.device))
        model, arguments, initial = self._build_network(data)
        from_initial_weights = initial is not None
        del initial  # not held for the whole run
        runtime.place_model(model)
        self.model = model
        checkpoint = checkpoints.checkpoint_to_resume(self.out_dir) if cfg.resume else None
        distributed.start(self.dist, runtime.device)
        context: Optional[RunContext] = None
        try:
            batch = plan.choose_batch_size(cfg, self.dist, model, runtime, data, checkpoint)
            sampler = PatchSampler(
                data.pairs,
                crop_size=cfg.crop_size,
                batch_size=batch[0],
                difference_share=cfg.difference_share,
                seed=cfg.seed,
                rank=self.dist.rank,
                scale=data.scale,
            )
            chosen = plan.make_plan(
                cfg,
                self.dist,
                data,
                working,
                runtime.device,
                int(arguments["width"]),
                sampler.crop_size,
                batch,
                from_initial_weights,
                checkpoint,
            )
            sampler.batch_size = chosen.batch_size
            context = self._start(cfg, model, arguments, sampler, runtime, data, working, chosen, checkpoint)
            return self._train(context, context.start_step, clock)
        finally:
            # Free DDP's reducer while the process group still exists: freed after the group is destroyed,
            # its destructor joins gloo's worker thread while holding the GIL the worker needs (a deadlock
            # seen at exit of a finished rank with torch 2.13).
            context = None
            distributed.stop(self.dist)

    def _start(
        self,
        cfg: TrainConfig,
        model: nn.Module,
        arguments: dict[str, Any],
        sampler: PatchSampler,
        runtime: Runtime,
        data: TrainingData,
        working: transfer.Transfer,
        chosen: plan.TrainingPlan,
        checkpoint: Optional[plan.Resuming],
    ) -> RunContext:
        """The optimizer, the guard and the loss log; a resumed run's state restored; config.yaml and Started."""
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
        guard = GradientGuard(chosen.gradient_clip)
        log = rundir.LossLog(self.out_dir / rundir.LOSS_LOG)
        start_step = 0
        if checkpoint is not None:
            start_step = checkpoints.restore(
                checkpoint.path, model, optimizer, sampler, arguments, guard, checkpoint.cat
            )
            if start_step > chosen.total_steps:
                raise CatFileError(
                    f"{checkpoint.path} is at step {start_step}, past this job's {chosen.total_steps} steps: raise "
                    "the job's steps or epochs above it to train on, or start a new run"
                )
        distributed.broadcast_parameters(self.dist, model)
        if self.dist.is_main:
            if cfg.resume:
                log.truncate(start_step)
            else:
                log.reset()
            # the batch as chosen; a resumed run's guard as its checkpoint had it
            repeat = replace(
                cfg, batch_size=chosen.batch_size, level_weights=chosen.repeat_weights, gradient_clip=guard.factor
            )
            save_yaml(repeat, self.out_dir / rundir.CONFIG)
        context = RunContext(
            model=model,
            forward=distributed.wrap(self.dist, loss.Levels(model), runtime.device),
            arguments=arguments,
            optimizer=optimizer,
            sampler=sampler,
            runtime=runtime,
            data=data,
            working=working,
            plan=chosen,
            log=log,
            guard=guard,
            start_step=start_step,
        )
        self._emit(
            Started(
                total_steps=chosen.total_steps,
                start_step=start_step,
                pairs=len(data.pairs),
                batch_size=chosen.batch_size,
                crop_size=sampler.crop_size,
                device=runtime.describe(),
                precision=runtime.precision,
                out_dir=self.out_dir,
                batch_choice=chosen.batch_choice,
                resolutions=chosen.resolutions,
                level_weights=f"{chosen.level_weights} ({chosen.weights_choice})",
                plan=chosen,
            )
        )
        return context

    def _train(self, run: RunContext, start_step: int, clock: float) -> TrainResult:
        cfg = self.config
        runtime = run.runtime
        run.model.train()
        losses: list[float] = []
        step = start_step
        loop_start = time.perf_counter()
        stopped = False
        while step < run.plan.total_steps:
            if distributed.any_rank_stopping(self.dist, self.stop_event.is_set(), runtime.device):
                stopped = True
                break
            lr = learning_rate(step, run.plan.total_steps, cfg.learning_rate)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            factor = resolution_factor(step, run.plan.total_steps, run.plan.stages)
            if factor != run.factor:
                self._change_resolution(run, factor)
            inputs, targets = run.sampler.next_batch()
            inputs = runtime.place(inputs)
            targets = runtime.place(targets)
            with runtime.autocast():
                outputs = run.forward(inputs)
            loss = multiscale_loss(outputs, targets, cfg.loss, run.plan.level_weights)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"the loss became {loss.item()} at step {step + 1}: check the frames for extreme values, "
                    "or lower the learning rate"
                )
            run.optimizer.zero_grad(set_to_none=True)
            with distributed.collective(self.dist):  # DDP all-reduces the gradients inside backward()
                loss.backward()
            norm = run.guard(run.model.parameters())  # a spike clipped to a multiple of the recent norms
            if not math.isfinite(norm):
                raise TrainingDivergedError(
                    f"the gradients became {norm} at step {step + 1}: check the frames for extreme values, or "
                    "lower the learning rate (or train with precision fp32)"
                )
            run.optimizer.step()
            step += 1
            if self.dist.sync_interval > 1 and step % self.dist.sync_interval == 0:
                distributed.average_parameters(self.dist, run.model)
            value = distributed.mean_over_ranks(self.dist, float(loss.item()), runtime.device)
            losses.append(value)
            if self.dist.is_main:
                run.log.append(step, value, lr, time.perf_counter() - clock)
            self._check_divergence(run, losses, step)  # every rank sees the same mean loss, so all stop together
            if not self.dist.is_main:
                continue
            elapsed = time.perf_counter() - loop_start
            rate = (step - start_step) / elapsed if elapsed > 0 else 0.0
            self._emit(
                StepDone(
                    step=step,
                    total_steps=run.plan.total_steps,
                    loss=value,
                    learning_rate=lr,
                    patches_per_second=rate * run.plan.batch_size * self.dist.world_size,
                    elapsed_seconds=elapsed,
                    eta_seconds=(run.plan.total_steps - step) / rate if rate > 0 else math.inf,
                )
            )
            if step % cfg.image_interval == 0:
                self._write_contact_sheet(run, step)
            if step % cfg.checkpoint_interval == 0 and step < run.plan.total_steps:
                self._write_checkpoint(run, step, value, clock)
        if self.dist.sync_interval > 1:
            distributed.average_parameters(self.dist, run.model)  # every rank ends with the same weights
        final_loss = losses[-1] if losses else run.log.last_loss()
        model_path = self.out_dir / "model.cat"
        if self.dist.is_main:
            self._write_checkpoint(run, step, final_loss, clock)
            if step % cfg.image_interval != 0:
                self._write_contact_sheet(run, step)
            model_path = self._write_model(run, step, final_loss, clock)
            run.log.flush()
            self._write_loss_plot(run.log)
        distributed.finish_together(self.dist)
        seconds = time.perf_counter() - clock
        self._emit(
            Finished(
                step=step,
                total_steps=run.plan.total_steps,
                stopped=stopped,
                model_path=model_path,
                final_loss=final_loss,
                seconds=seconds,
            )
        )
        return TrainResult(
            model_path=model_path,
            out_dir=self.out_dir,
            steps=step,
            total_steps=run.plan.total_steps,
            stopped=stopped,
            final_loss=final_loss,
            seconds=seconds,
            losses=losses,
        )

    def _check_divergence(self, run: RunContext, losses: Sequence[float], step: int) -> None:
        """Stop a run whose loss has blown up (:data:`DIVERGENCE_FACTOR`): it will not come back, and
        finishing it would only spend the machine's time on a useless network. The loss is compared with
        the lowest median the run has had over :data:`DIVERGENCE_WINDOW` steps (a reference that does not
        rise with the blow-up); a resumed run starts measuring again."""
        streak, window = DIVERGENCE_STEPS, DIVERGENCE_WINDOW
        if len(losses) < window + streak:
            return
        run.lowest_loss_median = min(run.lowest_loss_median, float(np.median(losses[-window - streak : -streak])))
        if min(losses[-streak:]) <= DIVERGENCE_FACTOR * run.lowest_loss_median:
            return
        guard = (
            f"a stronger gradient guard (gradient_clip {run.guard.factor:g} now)"
            if run.guard.factor
            else "the gradient guard on (--gradient-clip 10, or gradient_clip: 10 in the job's YAML)"
        )
        if self.dist.is_main:
            run.log.flush()  # the blow-up stays in loss.csv to look at
        raise TrainingDivergedError(
            f"training diverged at step {step}: for {streak} steps the loss has stayed over "
            f"{DIVERGENCE_FACTOR:g}× the lowest median it had over {window} steps ({run.lowest_loss_median:.3g}; "
            f"now {losses[-1]:.3g}), so the network has lost what it learnt. Start the job again with {guard}, "
            f"or with a lower learning rate (not --resume: the latest checkpoint may hold the blown-up network); "
            f"checkpoints written before step {step - streak} in {self.out_dir / 'checkpoints'} hold it from before"
        )

    def _change_resolution(self, run: RunContext, factor: int) -> None:
        """Sample from the pairs downscaled ÷``factor`` (a local effect: crops ÷``factor`` the size from the
        full-resolution pairs) from now on, continuing the same random stream (so a resumed run takes
        exactly the batches the uninterrupted one did)."""
        sampler = run.stage_samplers.get(factor)
        if sampler is None:
            pairs = (
                list(run.data.pairs) if run.plan.stage_crops else downscale_pairs(run.data.pairs, factor, run.working)
            )
            crop = max(MULTI_RESOLUTION_MIN_SIDE, run.stage_samplers[1].crop_size // factor // 16 * 16)
            sampler = PatchSampler(  # the plan checked that the crop fits; it is a multiple of 16
                pairs,
                crop_size=crop,
                batch_size=run.plan.batch_size,
                difference_share=self.config.difference_share,
                seed=self.config.seed,
                rank=self.dist.rank,
                scale=run.data.scale,
            )
            run.stage_samplers[factor] = sampler
        if sampler is not run.sampler:
            sampler.load_state_dict(run.sampler.state_dict())
        run.sampler = sampler
        run.factor = factor
        if factor == 1:  # the coarse stages are over: free their downscaled pairs
            run.stage_samplers = {1: sampler}

    # ------------------------------------------------------------------------- writing
    def _write_checkpoint(self, run: RunContext, step: int, loss: float, clock: float) -> Path:
        run.log.flush()  # the log is on disk as far as the checkpoint a resume starts from
        path = checkpoints.write_checkpoint(self.config, self.out_dir, run, step, loss, clock)
        self._emit(CheckpointWritten(step=step, path=path))
        return path

    def _write_model(self, run: RunContext, step: int, loss: float, clock: float) -> Path:
        return checkpoints.write_model(self.config, self.out_dir, run, step, loss, clock)

    def _write_contact_sheet(self, run: RunContext, step: int) -> Path:
        path = previews.write_contact_sheet(self.out_dir, run, step)
        self._emit(ContactSheetWritten(step=step, path=path))
        return path

    def _write_loss_plot(self, log: rundir.LossLog) -> Optional[Path]:
        steps, losses = log.read()
        return plots.save_loss_curve(self.out_dir / rundir.LOSS_PLOT, steps, losses) if steps else None


@dataclass
class RunContext:
    """Everything the loop and the writers share during one run."""

    model: nn.Module
    forward: nn.Module  #: model → its pyramid of predictions, wrapped in DistributedDataParallel when distributed
    arguments: dict[str, Any]
    optimizer: torch.optim.Optimizer
    sampler: PatchSampler
    runtime: Runtime
    data: TrainingData
    working: transfer.Transfer
    plan: plan.TrainingPlan
    log: rundir.LossLog
    guard: GradientGuard = field(default_factory=lambda: GradientGuard(0.0))  #: gradient spikes clipped
    start_step: int = 0  #: 0, or the step a resumed run goes on from
    factor: int = 1  #: the resolution the sampler draws from: 1 full, 2 half, 4 quarter
    stage_samplers: dict[int, PatchSampler] = field(default_factory=dict)  #: by factor; 1 is the full one
    lowest_loss_median: float = math.inf  #: the divergence check's reference (Trainer._check_divergence)

    def __post_init__(self) -> None:
        self.stage_samplers.setdefault(1, self.sampler)
