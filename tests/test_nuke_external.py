"""The nodes in a Nuke whose Python cannot import torch, training and rendering in an external Python.

The "Nuke" is a subprocess (tests/nukestub/locked_down.py) where torch, pyyaml, safetensors and tqdm are
not installed and the Nuke side is refused numpy and OpenImageIO (the stand-in nuke module renders with them,
as Nuke's C++ would); the external Python is this venv's, running the real ``copycat`` command. Tiny shots,
a Small network, 32 px crops.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nukestub.fixtures import REPO, STUB_DIR, write_shot

from copycat_nuke import imageio
from copycat_nuke.config import TrainConfig, load_yaml

WARNING = "\u26a0 "


def locked_down(tmp_path: Path, function: str, **arguments: Any) -> dict[str, Any]:
    """Run ``external_scenarios.FUNCTION(nuke, **arguments)`` in the locked-down Nuke; what it saw."""
    scenario = tmp_path / f"{function}.json"
    scenario.write_text(json.dumps({"function": function, "arguments": arguments}), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(STUB_DIR / "locked_down.py"), str(scenario)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=str(tmp_path),
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    seen: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return seen


def external_python(directory: Path) -> str:
    """This venv's Python as an executable file that trains in fp32 (as tests/test_nuke_training.py does:
    on this CPU "auto" picks bf16, whose kernels take seconds to set up for each new tensor shape)."""
    path = directory / "fp32-python"
    path.write_text(
        f"#!{sys.executable}\n"
        "import runpy, sys\n"
        "import copycat_nuke.device\n"
        "copycat_nuke.device.cpu_has_fast_bf16 = lambda: False\n"
        "assert sys.argv[1] == '-m', sys.argv\n"
        "sys.argv = [sys.argv[2], *sys.argv[3:]]\n"
        "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n",
        encoding="utf-8",
    )
    path.chmod(0o755)
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    work = tmp_path_factory.mktemp("external")
    plate, truth = write_shot(work / "shot", range(1, 4), range(1, 3))
    shot = {"input": plate, "truth": truth, "first": 1, "last": 3}
    seen = locked_down(work, "train", shot=shot, work=str(work), python=external_python(work))
    return work, shot, seen


def test_the_nuke_side_imports_no_torch_numpy_openimageio_or_pyyaml(trained):
    _, _, seen = trained
    assert seen["torch_found"] is False  # as in a Nuke without torch
    assert seen["refused"] == []  # and nothing on the Nuke side asked for those packages
    assert "copycat_nuke.nuke.external" in seen["nuke_side"] and "copycat_nuke.imageio" not in seen["nuke_side"]
    # every module the Nuke side imported is one ./dev test checks for Python 3.7
    check = _check_py37()
    checked = {str(path.relative_to(REPO)) for path in check.python_files()}
    for module in seen["nuke_side"]:
        parts = module.split(".")
        assert f"{'/'.join(parts)}.py" in checked or f"{'/'.join(parts)}/__init__.py" in checked, module


def test_without_an_external_python_the_node_names_both_fixes(trained):
    _, _, seen = trained
    status = seen["bare_status"]
    assert status.startswith(WARNING + "Nuke's Python") and "cannot import torch" in status
    for fix in ("pip install --target DIR", "COPYCAT_NUKE_SITE=DIR", "pythonExecutable", "COPYCAT_PYTHON"):
        assert fix in status
    assert len(seen["bare_messages"]) == 1 and "COPYCAT_PYTHON" in seen["bare_messages"][0]


def test_export_farm_job_writes_yaml_without_pyyaml(trained):
    work, _, seen = trained
    job = work / "bare" / "farm_job.yaml"
    assert seen["farm_status"] == f"Farm job written; on the farm run: copycat train --config {job}"
    config = load_yaml(TrainConfig, job)  # pyyaml reads what the standard library wrote
    assert config.frames == "1-2" and config.model_size == "small" and config.crop_size == 32


def test_a_farm_session_trains_to_the_end_in_the_external_python(trained):
    work, _, seen = trained
    assert seen["farm_created_status"].startswith("Ready: ")  # no warning: the buttons work
    assert seen["terminal_status"].startswith("Finished at step 2/2, loss ")
    assert seen["terminal_status"].endswith(str(work / "farm" / "model.cat"))
    assert seen["terminal_total_steps"] == "2 steps (2 pairs, batch 2)"
    assert any("training: step 2/2" in message for message in seen["terminal_task_messages"])
    run = work / "farm"
    assert (run / "model.cat").is_file() and (run / "config.yaml").is_file()
    assert (run / "external_job.log").is_file() and (run / "loss.csv").read_text().count("\n") == 3


def test_gui_training_shows_progress_and_stop_leaves_a_checkpoint_and_model(trained):
    work, _, seen = trained
    assert re.match(r"training: step [\d,]+/[\d,]+, loss ", seen["gui_progress"]), seen["gui_progress"]
    assert seen["gui_job_training"] == "None"  # no TrainingJob here: Show Panel follows the run directory
    stopped = re.match(r"Stopped at step ([\d,]+)/([\d,]+), loss ", seen["gui_stopped_status"])
    assert stopped, seen["gui_stopped_status"]
    step = int(stopped.group(1).replace(",", ""))
    run = work / "gui"
    assert (run / "model.cat").is_file() and (run / "checkpoints" / f"checkpoint.{step:07d}.cat").is_file()
    assert seen["gui_messages"] == [] and seen["violations"] == []


def test_an_error_of_the_command_is_one_line_on_the_node(trained):
    work, _, seen = trained
    status = seen["error_status"]
    assert status.startswith(WARNING + "training in the external Python ")
    assert "batch size 5 is larger than the 2 training pair(s)" in status
    assert f"(log: {work / 'broken' / 'external_job.log'})" in status
    assert "\n" not in status and "Traceback" not in status
    assert seen["error_messages"] == [f"CopyCat1: {status[len(WARNING) :]}".replace("CopyCat1", "CopyCat4")]


def test_external_inference_writes_the_frames(trained, tmp_path):
    work, shot, _ = trained
    output = str(tmp_path / "out" / "clean.####.exr")
    seen = locked_down(
        tmp_path, "infer", shot=shot, model=str(work / "farm" / "model.cat"), output=output, python=sys.executable
    )
    assert seen["refused"] == []
    assert seen["channels"] == [["R", "G", "B"], ["R", "G", "B"]]
    assert seen["written"] == [1, 2, 3] and seen["frames_match"]
    assert seen["records"] == [f"clean.{f:04d}.exr.json" for f in (1, 2, 3)]
    assert seen["errors"] == [False, False, False], seen["error_text"]
    assert seen["status"].startswith("Up to date: frames 1-3")
    for frame in (1, 2, 3):
        pixels = imageio.read_frame(tmp_path / "out" / f"clean.{frame:04d}.exr").pixels
        assert pixels.shape == (32, 48, 4)
    assert "cannot read" in seen["describe_error"] and "clean.0001.exr" in seen["describe_error"]


def _check_py37() -> Any:
    spec = importlib.util.spec_from_file_location("check_py37", REPO / "scripts" / "check_py37.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_python37_check_passes_and_catches_what_nuke_13_cannot_run(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "check_py37.py")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    check = _check_py37()
    bad = REPO / "copycat_nuke" / "nuke" / f"_py37_probe_{tmp_path.name}.py"
    bad.write_text(
        "from __future__ import annotations\nfrom pathlib import Path\nfrom typing import Any\n\n"
        "Alias = dict[str, Any]  # run time: 3.9\n\n\n"
        "def fine(x: list[int], y: int | None) -> tuple[int, ...]:  # hints: never evaluated\n"
        "    Path(x).unlink(missing_ok=True)  # 3.8\n    return isinstance(y, int | str)\n",
        encoding="utf-8",
    )
    try:
        problems = check.runtime_generics(bad)
        done = subprocess.run([sys.executable, str(REPO / "scripts" / "check_py37.py")], capture_output=True, text=True)
    finally:
        bad.unlink()
    assert len(problems) == 2 and "dict[str, Any] at run time" in problems[0] and "int | str" in problems[1]
    assert done.returncode == 1 and "unlink(missing_ok)" in done.stdout


def test_flat_yaml_reads_back_equal_with_pyyaml():
    import yaml

    from copycat_nuke.config import flat_yaml, from_dict, to_dict

    config = TrainConfig(input='a "b"\\c: #x', out="/tmp/é ☃", frames="1-2", learning_rate=1e-5, steps=3)
    config.gradient_clip = 1e20
    data = to_dict(config)
    assert yaml.safe_load(flat_yaml(data)) == data
    assert from_dict(TrainConfig, yaml.safe_load(flat_yaml(data))) == config
