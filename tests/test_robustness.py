"""Issue #21, "Nothing lost, ever": hostile files and mistakes end in one line and a distinct exit status,
never a traceback, and nothing the user did not ask to overwrite is overwritten."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from copycat_nuke import catcodec, catfile, errors, imageio, infer
from copycat_nuke.cli import build_parser, main
from copycat_nuke.config import TrainConfig, load_yaml, save_yaml
from copycat_nuke.errors import CatFileError, ConfigError, NonFiniteOutputError, SequenceError
from copycat_nuke.models import MSRN, msrn_arguments
from copycat_nuke.transfer import Transfer
from copycat_nuke.ui import runs


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_network(seed: int = 0) -> MSRN:
    torch.manual_seed(seed)
    network = MSRN(**{**msrn_arguments("small"), "width": 4})
    torch.nn.init.normal_(network.out.weight, std=0.05)
    return network


def tiny_manifest(**training: Any) -> catfile.Manifest:
    arguments = {**msrn_arguments("small"), "width": 4}
    return catfile.Manifest(
        "msrn", arguments, ["R", "G", "B"], ["R", "G", "B"], Transfer().to_dict(), training=training
    )


def tiny_cat(path: Path, network: torch.nn.Module | None = None, **training: Any) -> Path:
    network = network if network is not None else tiny_network()
    return catfile.save_cat(path, tiny_manifest(**training), network.state_dict())


def plate(directory: Path, name: str = "in", frames: tuple[int, ...] = (1, 2)) -> str:
    for number in frames:
        pixels = np.random.default_rng(number).random((16, 16, 3), dtype=np.float32)
        imageio.write_frame(directory / f"{name}.{number:04d}.exr", pixels)
    return str(directory / f"{name}.####.exr")


def one_error_line(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("copycat: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err
    return err


def rewrite_member(path: Path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {member: archive.read(member) for member in archive.namelist()}
    members[name] = data
    with zipfile.ZipFile(path, "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)


# ------------------------------------------------------------------------------------ 1: export in place


def test_export_onto_the_model_itself_is_refused_however_it_is_spelled(tmp_path, capsys, monkeypatch):
    model = tiny_cat(tmp_path / "m.cat")
    before = model.read_bytes()
    (tmp_path / "link.cat").symlink_to(model)
    monkeypatch.chdir(tmp_path)
    for option in ("--torchscript", "--onnx"):
        for spelling in ("m.cat", str(model), "./sub/../m.cat", "link.cat"):
            (tmp_path / "sub").mkdir(exist_ok=True)
            assert main(["export", "m.cat", option, spelling, "--force"]) == errors.EXIT_USAGE
            one_error_line(capsys, "model being exported")
    assert model.read_bytes() == before


def test_export_replaces_an_existing_file_only_with_force_and_never_a_cat(tmp_path, capsys):
    model = tiny_cat(tmp_path / "m.cat")
    other = tiny_cat(tmp_path / "other.cat", tiny_network(1))
    existing = tmp_path / "notes.pt"
    existing.write_bytes(b"someone's file")
    assert main(["export", str(model), "--torchscript", str(existing)]) == errors.EXIT_USAGE
    one_error_line(capsys, "already exists", "--force")
    assert existing.read_bytes() == b"someone's file"
    disguised = tmp_path / "other.pt"
    disguised.write_bytes(other.read_bytes())  # a .cat by content, whatever its name
    for target in (other, disguised):
        assert main(["export", str(model), "--torchscript", str(target), "--force"]) == errors.EXIT_USAGE
        one_error_line(capsys, ".cat model")
    assert main(["export", str(model), "--torchscript", str(existing), "--force"]) == 0
    assert existing.read_bytes() != b"someone's file"
    assert main(["export", str(model), "--torchscript", str(tmp_path / "x"), "--onnx", str(tmp_path / "x")]) == 2
    one_error_line(capsys, "both name")


# ------------------------------------------------------------------------- 5: declared sizes before reading


def adam_checkpoint(path: Path, **extra_tensors: torch.Tensor) -> Path:
    network = tiny_network()
    optimizer = torch.optim.Adam(network.parameters())
    network(torch.rand(1, 3, 16, 16)).mean().backward()
    optimizer.step()
    resume = catfile.ResumeState(
        step=1, optimizer=optimizer.state_dict(), rng={"torch": torch.get_rng_state()}, extra=dict(extra_tensors)
    )
    return catfile.save_cat(path, tiny_manifest(), network.state_dict(), resume)


def test_a_real_adam_checkpoint_fits_its_budget(tmp_path):
    cat = catfile.load_cat(adam_checkpoint(tmp_path / "c.cat"))
    assert cat.resume is not None and cat.resume.optimizer["state"]


def test_resume_tensors_larger_than_the_network_can_need_are_refused_before_reading(tmp_path):
    parameters = sum(p.numel() for p in tiny_network().parameters())
    with pytest.raises(CatFileError, match="more than the resume state"):
        adam_checkpoint(tmp_path / "big.cat", blob=torch.zeros(4 * parameters + (1 << 18)))
    # the same file written by hand: the header's declared sizes are checked before any data is read
    path = adam_checkpoint(tmp_path / "c.cat")
    with zipfile.ZipFile(path) as archive:
        yaml_text = archive.read("resume.yaml").decode()
        tensors = catcodec.load_safetensors_bytes(archive.read("resume.safetensors"))
    rewrite_member(
        path, "resume.yaml", yaml_text.replace("extra: {}", "extra: {blob: {__tensor__: extra/blob}}").encode()
    )
    tensors["extra/blob"] = torch.zeros(4 * parameters + (1 << 18))
    rewrite_member(path, "resume.safetensors", catcodec.save_safetensors(tensors))
    with pytest.raises(CatFileError, match=r"c\.cat: resume\.safetensors.*'extra/blob', declares \d+ bytes"):
        catfile.load_cat(path)
    with pytest.raises(CatFileError, match="'extra/blob', declares"):
        catfile.describe(path)  # `copycat info` refuses it too
    # a header that declares gigabytes must come with gigabytes of member: the zip directory says so first
    tensors["extra/blob"] = torch.zeros(4 << 20)
    rewrite_member(path, "resume.safetensors", catcodec.save_safetensors(tensors))
    with pytest.raises(CatFileError, match=r"resume\.safetensors declares \d+ bytes uncompressed \(limit"):
        catfile.load_cat(path)


def test_optimizer_state_of_the_wrong_shape_or_dtype_is_refused_naming_the_tensor(tmp_path):
    network = tiny_network()
    first = next(network.parameters())
    bad_shape = {"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(3), "exp_avg_sq": first}}}
    bad_dtype = {"state": {0: {"step": torch.tensor(1.0), "exp_avg": first.to(torch.int32), "exp_avg_sq": first}}}
    for state in (bad_shape, bad_dtype):
        with pytest.raises(CatFileError, match="optimizer/state/0/exp_avg"):
            catfile.save_cat(
                tmp_path / "c.cat", tiny_manifest(), network.state_dict(), catfile.ResumeState(step=1, optimizer=state)
            )
    ghost = {"state": {999: {"exp_avg": torch.zeros(1)}}}
    with pytest.raises(CatFileError, match="parameter 999"):
        catfile.save_cat(
            tmp_path / "c.cat", tiny_manifest(), network.state_dict(), catfile.ResumeState(step=1, optimizer=ghost)
        )
    with pytest.raises(CatFileError, match="rng/torch"):
        catfile.save_cat(
            tmp_path / "c.cat",
            tiny_manifest(),
            network.state_dict(),
            catfile.ResumeState(step=1, optimizer={}, rng={"torch": torch.zeros(3, 3)}),
        )


# ---------------------------------------------------------------------------------- 6: NaN output stops


@pytest.mark.parametrize("value", [1.0, 1e10, 1e38])
def test_a_model_that_overflows_is_refused_and_nothing_is_written(tmp_path, capsys, value):
    network = tiny_network()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.fill_(value)
    model = tiny_cat(tmp_path / "blown.cat", network)
    source = plate(tmp_path)
    out = tmp_path / "out"
    assert main(["infer", str(model), source, str(out / "o.####.exr"), "--quiet"]) == errors.EXIT_DIVERGED
    one_error_line(capsys, "blown.cat", "NaN or infinite")
    assert not out.exists() or not any(out.iterdir())


def test_nan_output_on_a_frame_stops_the_job_naming_model_and_frame(tmp_path, monkeypatch):
    model = tiny_cat(tmp_path / "m.cat")
    source = plate(tmp_path, frames=(1, 2, 3))
    real = infer._run_tiles

    def nan_on_the_second_frame(loaded: infer.LoadedModel, pixels: np.ndarray, tile: int, overlap: int) -> np.ndarray:
        result = real(loaded, pixels, tile, overlap)
        calls.append(1)
        if len(calls) == 2:
            result[3, 4, 0] = np.nan
        return result

    calls: list[int] = []
    monkeypatch.setattr(infer, "_run_tiles", nan_on_the_second_frame)
    with pytest.raises(NonFiniteOutputError, match=r"m\.cat.*in\.0002\.exr"):
        infer.infer_sequence(str(model), source, str(tmp_path / "out" / "o.####.exr"), device="cpu", tile=0)
    written = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert written == ["o.0001.exr"]  # the good frame before it; nothing of frame 2, no temp file


def test_non_finite_weights_are_refused_at_load(tmp_path):
    path = tiny_cat(tmp_path / "m.cat")
    with zipfile.ZipFile(path) as archive:
        weights = catcodec.load_safetensors_bytes(archive.read("weights.safetensors"))
    weights["out.bias"] = torch.full_like(weights["out.bias"], float("inf"))
    rewrite_member(path, "weights.safetensors", catcodec.save_safetensors(weights))
    with pytest.raises(CatFileError, match="NaN or infinite"):
        catfile.load_cat(path)


# ------------------------------------------------------------------------------- 7: messages, not tracebacks


def test_a_seed_too_large_for_any_generator_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--seed", "1180591620717411303424", "--input", "a", "--target", "b", "--out", "c"])
    assert exit_info.value.code == errors.EXIT_USAGE
    assert "out of range" in capsys.readouterr().err
    config = tmp_path / "job.yaml"
    config.write_text("seed: 1180591620717411303424\n")
    with pytest.raises(ConfigError, match="seed"):
        load_yaml(TrainConfig, config)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"\x76\x2f\x31\x01\x02\x00\x00\x00channels\x00chlist\x00\xff\xfe", "not a YAML text file"),
        (b"[" * 100_000, "config"),
        (b"a: " + b"9" * 100_000 + b"\n", "config"),
        (b"x" * (2 << 20), "over"),
        (b"- a\n- b\n", "mapping"),
    ],
)
def test_a_config_that_is_not_a_job_yaml_is_one_line(tmp_path, capsys, content, words):
    config = tmp_path / "plate.exr"
    config.write_bytes(content)
    code = main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"])
    assert code == errors.EXIT_USAGE
    one_error_line(capsys, "plate.exr", words)


def test_an_unexpected_error_is_one_line_with_status_1_and_a_traceback_on_request(monkeypatch, capsys):
    def explode(args: Any) -> int:
        raise ZeroDivisionError("boom")

    parser = build_parser()
    args = parser.parse_args(["info", "x.cat"])
    monkeypatch.setattr("copycat_nuke.cli._run_info", explode)
    args.handler = explode
    monkeypatch.setattr("copycat_nuke.cli.build_parser", lambda: _FixedParser(args))
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    assert main(["info", "x.cat"]) == errors.EXIT_ERROR
    one_error_line(capsys, "ZeroDivisionError", "boom", errors.DEBUG_ENV)
    monkeypatch.setenv(errors.DEBUG_ENV, "1")
    with pytest.raises(ZeroDivisionError):
        main(["info", "x.cat"])


class _FixedParser:
    def __init__(self, args: Any) -> None:
        self.args = args

    def parse_args(self, argv: Any) -> Any:
        return self.args


def test_exit_statuses_are_distinct_and_listed_in_help(capsys):
    statuses = {
        errors.EXIT_OK,
        errors.EXIT_ERROR,
        errors.EXIT_USAGE,
        errors.EXIT_BAD_INPUT,
        errors.EXIT_DIVERGED,
        errors.EXIT_INTERRUPTED,
    }
    assert len(statuses) == 6
    assert errors.exit_status(ConfigError("x")) == 2
    assert errors.exit_status(CatFileError("x")) == errors.exit_status(SequenceError("x")) == 3
    assert errors.exit_status(errors.TrainingDivergedError("x")) == 4
    assert errors.exit_status(errors.TrainingInputError("no Ground Truth frames")) == 3
    assert errors.exit_status(errors.TrainingError("cannot write")) == 1
    assert errors.exit_status(KeyboardInterrupt()) == 130
    text = build_parser().format_help()
    for status in statuses - {0}:
        assert f"\n  {status} " in text
    assert errors.DEBUG_ENV in text


def test_a_bad_model_file_exits_with_the_bad_input_status(tmp_path, capsys):
    bad = tmp_path / "evil.cat"
    bad.write_bytes(b"PK\x03\x04 truncated")
    assert main(["info", str(bad)]) == errors.EXIT_BAD_INPUT
    one_error_line(capsys, "evil.cat")


def test_one_bad_run_is_listed_as_unreadable_and_the_others_still_load(tmp_path):
    good, nested, binary, noisy = (tmp_path / name for name in ("good", "nested", "binary", "noisy"))
    for run in (good, nested, binary, noisy):
        run.mkdir()
        save_yaml(TrainConfig(steps=10), run / "config.yaml")
        (run / "loss.csv").write_text("step,loss,seconds\n1,0.5,1.0\n")
    (nested / runs.DISPLAY_FILE).write_text("[" * 100_000)
    (binary / "config.yaml").write_bytes(b"\x00\xff\xfe binary \x89PNG")
    (noisy / "loss.csv").write_bytes(b"step,loss\n" + b"\x00" * 1000 + b"\n" + b"9" * (1 << 18))
    (noisy / "contact_sheets").mkdir()
    (noisy / "contact_sheets" / "latest.txt").write_bytes(b"\xff\xfe\x00")
    found = runs.find_runs(tmp_path)
    assert [path.name for path in found] == ["binary", "good", "nested", "noisy"]
    summaries = {path.name: runs.summarize(path) for path in found}
    assert summaries["good"].status == "incomplete" and not summaries["good"].problem  # no model.cat yet
    assert summaries["nested"].name == "nested" and summaries["nested"].status == "incomplete"
    assert summaries["binary"].status.startswith("unreadable: ") and "config.yaml" in summaries["binary"].problem
    assert summaries["noisy"].step in (0, 1)
    assert runs.latest_contact_sheet(noisy) is None


# --------------------------------------------------------------------- 11: config paths from any directory


def test_relative_paths_in_a_config_file_are_relative_to_its_folder(tmp_path, monkeypatch):
    job = tmp_path / "jobs"
    (job / "plates").mkdir(parents=True)
    (job / "job.yaml").write_text("input: plates/in.####.exr\ntarget: plates/gt.####.exr\nout: runs/a\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_yaml(TrainConfig, "../jobs/job.yaml")
    assert config.input == str(job / "plates" / "in.####.exr")
    assert config.out == str(job / "runs" / "a")
    assert not (elsewhere / "runs").exists()


def test_an_old_run_config_with_cwd_relative_paths_still_resumes_from_elsewhere(tmp_path, monkeypatch):
    (tmp_path / "plates").mkdir()
    run = tmp_path / "runs" / "markers"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("input: plates/in.####.exr\ntarget: plates/gt.####.exr\nout: runs/markers\n")
    monkeypatch.chdir(tmp_path)  # where training started: the old reading still holds
    here = load_yaml(TrainConfig, run / "config.yaml")
    assert here.input == str(tmp_path / "plates" / "in.####.exr") and here.out == str(run)
    monkeypatch.chdir(run.parent)  # anywhere else: out is the run the file sits in, no stray folders
    there = load_yaml(TrainConfig, run / "config.yaml")
    assert there.out == str(run)


def test_the_cli_turns_command_line_paths_absolute_for_config_yaml(tmp_path, monkeypatch):
    from copycat_nuke.cli import _train_config

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["train", "--input", "a.####.exr", "--target", "b.####.exr", "--out", "run"])
    config = _train_config(args)
    assert config.input == str(tmp_path / "a.####.exr") and config.out == str(tmp_path / "run")
    assert config.initial_weights == "none"


# ------------------------------------------------------------------- 12: training data, shared validation


def test_infer_refuses_to_overwrite_the_ground_truth_the_model_was_trained_from(tmp_path, capsys):
    source = plate(tmp_path, "in")
    truth = plate(tmp_path, "gt")
    before = (tmp_path / "gt.0001.exr").read_bytes()
    model = tiny_cat(tmp_path / "m.cat", input=source, target=truth)
    other = tmp_path / "other"
    other.mkdir()
    plate(other, "shot")
    assert main(["infer", str(model), str(other / "shot.####.exr"), truth, "--quiet"]) == errors.EXIT_BAD_INPUT
    one_error_line(capsys, "Ground Truth", "gt.0001.exr")
    assert (tmp_path / "gt.0001.exr").read_bytes() == before
    (tmp_path / "gt-link").symlink_to(tmp_path)
    link = str(tmp_path / "gt-link" / "gt.####.exr")
    assert main(["infer", str(model), str(other / "shot.####.exr"), link, "--quiet"]) == errors.EXIT_BAD_INPUT
    one_error_line(capsys, "Ground Truth")
    assert main(["infer", str(model), str(other / "shot.####.exr"), str(tmp_path / "o.####.exr"), "--quiet"]) == 0


@pytest.mark.parametrize(
    "transfer",
    [{"name": "evil"}, {"name": "slog", "params": {"a": float("nan")}}, {"name": "slog", "params": {"zz": 1.0}}],
)
def test_info_refuses_a_transfer_that_infer_would_refuse(tmp_path, capsys, transfer):
    path = tiny_cat(tmp_path / "m.cat")
    with zipfile.ZipFile(path) as archive:
        manifest = archive.read("manifest.yaml").decode()
    start = manifest.index("transfer:")
    end = manifest.index("\n", manifest.index("params", start)) + 1
    manifest = manifest[:start] + "transfer: " + json.dumps(transfer).replace("NaN", ".nan") + "\n" + manifest[end:]
    rewrite_member(path, "manifest.yaml", manifest.encode())
    assert main(["info", str(path)]) == errors.EXIT_BAD_INPUT
    one_error_line(capsys, "m.cat", "transfer")


@pytest.mark.parametrize(
    ("insert", "words"),
    [("kind: !!str model\n", "tags"), ("anchored: &a {x: 1}\n", "anchors"), ("scale: !custom 1\n", "tags")],
)
def test_yaml_tags_and_anchors_are_refused_as_the_format_says(tmp_path, insert, words):
    path = tiny_cat(tmp_path / "m.cat")
    with zipfile.ZipFile(path) as archive:
        manifest = archive.read("manifest.yaml").decode()
    lines = [line for line in manifest.splitlines(keepends=True) if not line.startswith(insert.split(":")[0] + ":")]
    rewrite_member(path, "manifest.yaml", ("".join(lines) + insert).encode())
    with pytest.raises(CatFileError, match=words):
        catfile.read_manifest(path)


def test_stale_temp_files_of_a_killed_infer_are_removed_by_the_rerun(tmp_path):
    model = tiny_cat(tmp_path / "m.cat")
    source = plate(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".o.0001.exr.tmp-1a2b3c4d.exr").write_bytes(b"half")  # what a killed earlier version left
    (out / ".o.0002.exr.tmp-1a2b3c4d").write_bytes(b"half")
    infer.infer_sequence(str(model), source, str(out / "o.####.exr"), device="cpu")
    assert sorted(os.listdir(out)) == ["o.0001.exr", "o.0002.exr"]


def test_a_training_run_stopped_early_exits_with_the_interrupted_status(tmp_path, monkeypatch, capsys):
    from copycat_nuke import train

    class StoppedTrainer:
        """A Trainer whose run was stopped by Ctrl-C or SIGTERM after writing a checkpoint and model.cat."""

        def __init__(self, config: TrainConfig, listeners: Any, stop: Any) -> None:
            self.dist = type("Dist", (), {"is_main": True})()

        def run(self) -> train.TrainResult:
            return train.TrainResult(tmp_path / "model.cat", tmp_path, 3, 10, True, 0.1, 1.0)

    monkeypatch.setattr(train, "Trainer", StoppedTrainer)
    args = ["train", "--input", "a.####.exr", "--target", "b.####.exr", "--out", str(tmp_path), "--quiet"]
    assert main(args) == errors.EXIT_INTERRUPTED
    assert capsys.readouterr().out.strip().endswith("model.cat")
