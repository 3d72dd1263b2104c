"""copycat upscale / deblur: ×2 and ×4 sizes, single files, the right network for each, refining on the shot."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
import torch

import copycat_nuke
from copycat_nuke import catfile, errors, imageio, pretrained, upscale
from copycat_nuke.cli import main
from copycat_nuke.config import TrainConfig
from copycat_nuke.infer import apply_model, load_model
from copycat_nuke.train import Trainer


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Two cores shared with other work: tiny networks gain nothing from more threads.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def smooth(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 8, width // 8, channels), dtype=np.float32)
    return np.ascontiguousarray(coarse.repeat(8, 0).repeat(8, 1))


def train_tiny_cat(directory: Path, scale: int) -> Path:
    """A Small network trained 2 steps on random pairs whose Ground Truth is ``scale``× the Input."""
    for frame in (1, 2):
        truth = smooth(32 * scale, 48 * scale, seed=frame)
        source = truth[::scale, ::scale] * 0.9
        imageio.write_frame(directory / f"in.{frame:04d}.exr", source, "rgb", pixel_type="float")
        imageio.write_frame(directory / f"gt.{frame:04d}.exr", truth, "rgb", pixel_type="float")
    config = TrainConfig(
        input=str(directory / "in.####.exr"),
        target=str(directory / "gt.####.exr"),
        out=str(directory / "run"),
        steps=2,
        model_size="small",
        batch_size=2,
        crop_size=16,
        checkpoint_interval=100,
        image_interval=100,
        precision="fp32",
        device="cpu",
    )
    return Trainer(config).run().model_path


@pytest.fixture(scope="module")
def x2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_cat(tmp_path_factory.mktemp("x2"), scale=2)


@pytest.fixture(scope="module")
def x1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_cat(tmp_path_factory.mktemp("x1"), scale=1)


def write_plate(directory: Path, frames: Sequence[int] = (1, 2), size: tuple[int, int] = (32, 48)) -> str:
    """An RGBA half-float plate: the model's rgb plus an alpha to pass through."""
    for frame in frames:
        rgba = np.concatenate([smooth(size[0], size[1], seed=10 + frame), np.ones((*size, 1), np.float32)], axis=2)
        imageio.write_frame(directory / f"plate.{frame:04d}.exr", rgba, "rgba", pixel_type="half")
    return str(directory / "plate.####.exr")


def run(*argv: object) -> int:
    return main([str(a) for a in argv] + ["--quiet", "--device", "cpu"])


@pytest.mark.parametrize("scale", [2, 4])
def test_upscale_makes_frames_scale_times_larger_keeping_alpha_and_half_pixels(
    x2: Path, tmp_path: Path, scale: int
) -> None:
    plate = write_plate(tmp_path)
    out = tmp_path / "out" / "up.####.exr"
    assert run("upscale", plate, out, "--scale", scale, "--model", x2) == 0
    for frame in (1, 2):
        result = imageio.read_frame(tmp_path / "out" / f"up.{frame:04d}.exr")
        assert result.pixels.shape == (32 * scale, 48 * scale, 4)
        assert result.channels == ("R", "G", "B", "A") and result.pixel_type == "half"
        assert result.display_window.width == 48 * scale
        assert np.allclose(result.pixels[:, :, 3], 1.0)
        assert result.metadata["copycat:scale"] == scale


def test_x4_is_the_x2_network_run_twice(x2: Path) -> None:
    model = load_model(x2, "cpu")
    pixels = smooth(32, 48, channels=4)
    frame = imageio.Frame(
        pixels, ("R", "G", "B", "A"), imageio.Window(0, 0, 48, 32), imageio.Window(0, 0, 48, 32), "float"
    )
    result, names = upscale.upscale_frame(model, frame, scale=4, tile=0)
    twice = apply_model(model, apply_model(model, pixels[:, :, :3], tile=0), tile=0)
    assert names == ["R", "G", "B", "A"] and result.shape == (128, 192, 4)
    assert np.array_equal(result[:, :, :3], twice)
    without, names = upscale.upscale_frame(model, frame, scale=4, tile=0, passthrough=False)
    assert names == ["R", "G", "B"] and without.shape == (128, 192, 3)


def test_upscale_a_single_file_to_a_single_file(x2: Path, tmp_path: Path) -> None:
    imageio.write_frame(tmp_path / "still.exr", smooth(32, 48), "rgb", pixel_type="float")
    assert run("upscale", tmp_path / "still.exr", tmp_path / "big.exr", "--model", x2, "--scale", 4) == 0
    assert imageio.read_frame(tmp_path / "big.exr").pixels.shape == (128, 192, 3)


def test_upscale_refuses_a_same_size_network_by_name_and_writes_nothing(
    x1: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plate = write_plate(tmp_path)
    assert run("upscale", plate, tmp_path / "out" / "up.####.exr", "--model", x1) == errors.EXIT_BAD_INPUT
    error = capsys.readouterr().err.strip()
    assert error.startswith("copycat: error:") and str(x1) in error and "×1 network" in error and "×2" in error
    assert len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_deblur_keeps_the_size_and_refuses_an_upscaler(
    x1: Path, x2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plate = write_plate(tmp_path)
    assert run("deblur", plate, tmp_path / "out" / "sharp.####.exr", "--model", x1) == 0
    result = imageio.read_frame(tmp_path / "out" / "sharp.0002.exr")
    assert result.pixels.shape == (32, 48, 4) and result.channels == ("R", "G", "B", "A")
    capsys.readouterr()
    assert run("deblur", plate, tmp_path / "other" / "sharp.####.exr", "--model", x2) == errors.EXIT_BAD_INPUT
    assert "×2 network" in capsys.readouterr().err and not (tmp_path / "other").exists()


def test_refine_on_shot_trains_on_the_shot_then_upscales_with_the_refined_network(
    x2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plate = write_plate(tmp_path, frames=(1, 2, 3), size=(48, 64))
    out = tmp_path / "out" / "up.####.exr"
    assert run("upscale", plate, out, "--model", x2, "--refine-on-shot", 2, "--frames", "1,3") == 0
    run_dir = tmp_path / "out" / "refine_run"  # the default: next to the output
    refined = run_dir / "model.cat"
    assert f"refined network: {refined}" in capsys.readouterr().out
    manifest = catfile.read_manifest(refined)
    assert manifest.scale == 2 and manifest.training["steps"] == 2
    assert sorted(p.name for p in (run_dir / "pairs").iterdir()) == [
        "input.0001.exr",
        "input.0003.exr",
        "truth.0001.exr",
        "truth.0003.exr",
    ]
    assert imageio.read_frame(run_dir / "pairs" / "input.0001.exr").pixels.shape == (24, 32, 3)
    assert imageio.read_frame(run_dir / "pairs" / "truth.0001.exr").pixels.shape == (48, 64, 3)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.exr")) == ["up.0001.exr", "up.0003.exr"]
    assert imageio.read_frame(tmp_path / "out" / "up.0003.exr").metadata["copycat:model"] == "model.cat"
    assert imageio.read_frame(tmp_path / "out" / "up.0003.exr").pixels.shape == (96, 128, 4)


def test_refine_spreads_over_the_shot_when_no_frames_are_given() -> None:
    assert upscale._spread(list(range(1001, 1101)), 8) == [1001, 1015, 1029, 1043, 1058, 1072, 1086, 1100]
    assert upscale._spread([5, 6], 8) == [5, 6]


@pytest.mark.parametrize(
    ("extra", "size", "message", "status"),
    [
        (["--refine-on-shot", "0"], (48, 64), "at least 1 training step", errors.EXIT_USAGE),
        (["--refine-on-shot", "2"], (24, 48), "at least 32×32", errors.EXIT_BAD_INPUT),
        (["--refine-out", "somewhere"], (48, 64), "--refine-out names the run directory of --refine-on-shot", 2),
    ],
)
def test_bad_refinement_settings_fail_in_one_line_before_anything_is_written(
    x2: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    size: tuple[int, int],
    message: str,
    status: int,
) -> None:
    plate = write_plate(tmp_path, size=size)
    assert run("upscale", plate, tmp_path / "out" / "up.####.exr", "--model", x2, *extra) == status
    error = capsys.readouterr().err.strip()
    assert error.startswith("copycat: error:") and message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_bad_frame_late_in_the_shot_leaves_no_pairs_behind(x2: Path, tmp_path: Path) -> None:
    plate = write_plate(tmp_path, frames=(1, 2), size=(48, 64))
    small = write_plate(tmp_path / "small", frames=(3,), size=(24, 48))
    Path(small.replace("####", "0003")).rename(plate.replace("####", "0003"))
    run_dir = tmp_path / "out" / "refine"
    with pytest.raises(copycat_nuke.ImageIOError, match=r"plate\.0003\.exr is 48×24 pixels"):
        upscale.refine_on_shot(plate, run_dir, steps=2, model=x2)
    assert not (tmp_path / "out").exists()  # frames 1 and 2 were written, then taken back with their folders
    (run_dir / "pairs").mkdir(parents=True)  # an earlier refinement's pairs stay until a new set is complete
    (run_dir / "pairs" / "input.0009.exr").write_bytes(b"earlier")
    with pytest.raises(copycat_nuke.ImageIOError, match="0003"):
        upscale.refine_on_shot(plate, run_dir, steps=2, model=x2)
    assert sorted(p.name for p in run_dir.iterdir()) == ["pairs"]
    assert [p.name for p in (run_dir / "pairs").iterdir()] == ["input.0009.exr"]


@pytest.mark.parametrize("command", ["upscale", "deblur"])
def test_a_missing_shipped_network_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setattr(pretrained, "shipped_model", lambda name: tmp_path / f"{name}.cat")
    plate = write_plate(tmp_path)
    assert run(command, plate, tmp_path / "out" / "o.####.exr") == errors.EXIT_ERROR  # an installation problem
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"copycat: error: The shipped {command.capitalize()} network is not installed")
    assert "--model" in error and not (tmp_path / "out").exists()


def test_the_python_api_exports_upscale_deblur_and_refine() -> None:
    assert copycat_nuke.upscale_sequence is upscale.upscale_sequence
    assert copycat_nuke.deblur_sequence is upscale.deblur_sequence
    assert copycat_nuke.refine_on_shot is upscale.refine_on_shot


# ------------------------------------------------------------------------------------ overscan and layers

LAYERS = ("R", "G", "B", "A", "depth.Z", "mask.A")


def write_overscan_plate(path: Path) -> np.ndarray:
    """A Nuke render with overscan (24×16 format, 32×24 bbox at (-4, -4)), float, rgb plus alpha, depth.Z
    and mask.A, written with OpenImageIO directly. Returns the bbox's pixels in LAYERS order."""
    rng = np.random.default_rng(7)
    data = np.concatenate([smooth(24, 32, seed=3), rng.random((24, 32, 3), dtype=np.float32)], axis=2)
    spec = oiio.ImageSpec(32, 24, 6, "float")
    spec.channelnames = LAYERS
    spec.x, spec.y = -4, -4
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = 0, 0, 24, 16
    out = oiio.ImageOutput.create(str(path))
    assert out is not None and out.open(str(path), spec), oiio.geterror()
    assert out.write_image(np.ascontiguousarray(data)), out.geterror()
    out.close()
    return data


def windows_on_disk(path: Path) -> tuple[tuple[int, ...], tuple[int, ...]]:
    inp = oiio.ImageInput.open(str(path))
    spec = inp.spec()
    inp.close()
    return (spec.x, spec.y, spec.width, spec.height), (spec.full_x, spec.full_y, spec.full_width, spec.full_height)


def bilinear(pixels: np.ndarray, factor: int) -> np.ndarray:
    """An independent bilinear enlargement (torch, pixel centres aligned) to check OIIO's triangle against."""
    tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]
    resized = torch.nn.functional.interpolate(tensor, scale_factor=float(factor), mode="bilinear", align_corners=False)
    return resized[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("how", ["upscale", "infer"])
def test_x2_keeps_overscan_and_resizes_alpha_and_every_layer_the_model_does_not_write(
    x2: Path, tmp_path: Path, how: str
) -> None:
    data = write_overscan_plate(tmp_path / "plate.0001.exr")
    out = tmp_path / "out" / "up.####.exr"
    if how == "upscale":
        assert run("upscale", tmp_path / "plate.####.exr", out, "--model", x2) == 0
    else:  # a scale-2 model through plain inference used to drop every channel but its own
        assert run("infer", x2, tmp_path / "plate.####.exr", out) == 0
    written = tmp_path / "out" / "up.0001.exr"
    assert windows_on_disk(written) == ((-8, -8, 64, 48), (0, 0, 48, 32))  # origin and size ×2
    result = imageio.read_frame(written)
    assert result.channels == LAYERS and result.pixels.shape == (48, 64, 6)
    others = result.pixels[:, :, 3:]
    assert others.tobytes() == imageio.resize(data[:, :, 3:], 2).tobytes()  # OIIO's "triangle" filter
    np.testing.assert_allclose(others, bilinear(data[:, :, 3:], 2), atol=1e-5)
    expected = apply_model(load_model(x2, "cpu"), data[:, :, :3], tile=0)  # the network saw the whole bbox
    np.testing.assert_allclose(result.select("rgb"), expected, atol=1e-5)


def test_deblur_keeps_overscan_and_copies_the_other_layers_bit_for_bit(x1: Path, tmp_path: Path) -> None:
    data = write_overscan_plate(tmp_path / "plate.0001.exr")
    (written,) = copycat_nuke.deblur_sequence(
        str(tmp_path / "plate.####.exr"), str(tmp_path / "sharp.####.exr"), model=x1, device="cpu"
    )
    assert windows_on_disk(written) == ((-4, -4, 32, 24), (0, 0, 24, 16))
    result = imageio.read_frame(written)
    assert result.channels == LAYERS
    assert result.pixels[:, :, 3:].tobytes() == np.ascontiguousarray(data[:, :, 3:]).tobytes()
