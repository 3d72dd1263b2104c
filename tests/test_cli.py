"""The copycat command: train, infer, info and demo end to end, and one clear line on bad input."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import write_pairs

from copycat_nuke import catfile, errors, imageio
from copycat_nuke.cli import build_parser, main


def train_args(tmp_path, *extra):
    source, truth = write_pairs(tmp_path)
    return [
        "train",
        "--input",
        source,
        "--target",
        truth,
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "3",
        "--model-size",
        "small",
        "--crop-size",
        "32",
        "--batch-size",
        "2",
        "--quiet",
        *extra,
    ]


def test_train_then_infer_then_info(tmp_path, capsys):
    assert main(train_args(tmp_path)) == 0
    model = tmp_path / "run" / "model.cat"
    assert capsys.readouterr().out.strip().endswith("model.cat")
    assert (
        main(["infer", str(model), str(tmp_path / "in.####.exr"), str(tmp_path / "out" / "o.####.exr"), "--quiet"]) == 0
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["o.0001.exr", "o.0002.exr", "o.0003.exr"]
    result = imageio.read_frame(tmp_path / "out" / "o.0002.exr")
    assert result.pixels.shape == (48, 64, 3) and result.pixel_type == "float"
    capsys.readouterr()
    assert main(["info", str(model), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["channels_in"] == ["R", "G", "B"] and info["training"]["steps"] == 3
    assert main(["info", str(model)]) == 0
    assert "R, G, B" in capsys.readouterr().out or "RGB" in capsys.readouterr().out


def test_config_file_repeats_a_job_and_options_override_it(tmp_path):
    # (not the defaults: auto would take equal here, and the gradient guard is off)
    assert main(train_args(tmp_path, "--level-weights", "doubling", "--gradient-clip", "4")) == 0
    config = tmp_path / "run" / "config.yaml"
    assert main(["train", "--config", str(config), "--steps", "4", "--out", str(tmp_path / "again"), "--quiet"]) == 0
    repeated = catfile.read_manifest(tmp_path / "again" / "model.cat")
    assert repeated.training["steps"] == 4 and repeated.config["level_weights"] == "doubling"
    assert repeated.config["gradient_clip"] == 4.0


def test_resume_continues_from_the_latest_checkpoint(tmp_path):
    assert main(train_args(tmp_path, "--checkpoint-interval", "2")) == 0
    assert main(train_args(tmp_path, "--steps", "5", "--resume")) == 0
    assert catfile.read_manifest(tmp_path / "run" / "model.cat").training["steps"] == 5


def test_bad_input_prints_one_clear_line_and_exits_non_zero(tmp_path, capsys):
    args = train_args(tmp_path)
    args[args.index("--target") + 1] = str(tmp_path / "missing.####.exr")
    assert main(args) == errors.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("copycat: error: ") and "missing.####.exr" in err and "Traceback" not in err


def test_hostile_model_file_is_refused_cleanly(tmp_path, capsys):
    bad = tmp_path / "evil.cat"
    bad.write_bytes(b"\x80\x04\x95not a zip at all")
    assert main(["info", str(bad)]) == errors.EXIT_BAD_INPUT
    assert "evil.cat" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "train" in capsys.readouterr().out


def test_console_entry_point_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "copycat_nuke", "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "demo" in done.stdout


def test_every_command_prints_its_help(capsys):
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"train", "infer", "demo"} <= set(commands)
    for command in commands:  # argparse expands "%" in help text: a stray one crashed `copycat train --help`
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert "usage: copycat " + command in capsys.readouterr().out


def test_infer_passes_through_channels_the_model_does_not_touch(tmp_path):
    assert main(train_args(tmp_path)) == 0
    rgba = np.random.default_rng(0).random((48, 64, 4), dtype=np.float32)
    imageio.write_frame(tmp_path / "rgba.0001.exr", rgba, "rgba")
    out = tmp_path / "o.####.exr"
    assert (
        main(["infer", str(tmp_path / "run" / "model.cat"), str(tmp_path / "rgba.####.exr"), str(out), "--quiet"]) == 0
    )
    result = imageio.read_frame(tmp_path / "o.0001.exr")
    assert result.channels == ("R", "G", "B", "A")
    assert np.array_equal(
        result.select("A")[..., 0], imageio.read_frame(tmp_path / "rgba.0001.exr").select("A")[..., 0]
    )
    assert result.pixel_type == "half"


@pytest.mark.parametrize("missing", ["0002"])
def test_infer_names_a_missing_frame(tmp_path, capsys, missing):
    assert main(train_args(tmp_path)) == 0
    out = tmp_path / "o.####.exr"
    code = main(
        [
            "infer",
            str(tmp_path / "run" / "model.cat"),
            str(tmp_path / "in.####.exr"),
            str(out),
            "--frames",
            "1-4",
            "--quiet",
        ]
    )
    assert code == errors.EXIT_BAD_INPUT and "4" in capsys.readouterr().err


def test_every_training_setting_is_an_option_explained_by_its_field(capsys):
    from dataclasses import fields

    from copycat_nuke.config import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for setting in fields(TrainConfig):
        option = "--" + setting.name.replace("_", "-")
        assert option in text, option
        assert " ".join(str(setting.metadata["help"]).split())[:40] in text, setting.name
    assert "(default 256)" in text and "(default on)" in text  # defaults come from the fields
