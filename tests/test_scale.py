"""The ×2 path: an untrained upscaler is bilinear, crops stay aligned, training, inference and export all scale."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from copycat_nuke import catfile, export, imageio, infer
from copycat_nuke.config import TrainConfig
from copycat_nuke.data import Pair, PatchSampler, infer_scale, validate_pairs
from copycat_nuke.errors import CatFileError, ResolutionMismatchError
from copycat_nuke.models import MSRN, build_model, msrn_arguments
from copycat_nuke.train import Trainer
from copycat_nuke.transfer import Transfer

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny tensors gain nothing from a second thread on a shared 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_msrn(scale: int, seed: int = 0) -> MSRN:
    """An untrained width-4 MSRN (its output conv starts at zero)."""
    torch.manual_seed(seed)
    network = build_model("msrn", {**msrn_arguments("small", scale=scale), "width": 4})
    assert isinstance(network, MSRN)
    return network.eval()


def bilinear_x2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def smooth(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Blocky random colour, float32 H×W×3."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 8 + 1, width // 8 + 1, 3), dtype=np.float32)
    return np.ascontiguousarray(coarse.repeat(8, 0).repeat(8, 1)[:height, :width])


def x2_cat(path: Path, seed: int = 0) -> Path:
    """A width-4 ×2 MSRN with a non-zero output layer (so it is not just bilinear), saved as a .cat."""
    network = tiny_msrn(2, seed)
    torch.nn.init.normal_(network.out.weight, std=0.05)
    arguments = {**msrn_arguments("small", scale=2), "width": 4}
    manifest = catfile.Manifest("msrn", arguments, ["R", "G", "B"], ["R", "G", "B"], Transfer().to_dict(), scale=2)
    return catfile.save_cat(path, manifest, network.state_dict())


@pytest.fixture(scope="module")
def x2_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return x2_cat(tmp_path_factory.mktemp("x2") / "x2.cat")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(max(float(np.abs(b).max()), 1e-6) ** 2 / max(float(np.mean((a - b) ** 2)), 1e-20)))


# ------------------------------------------------------------------------------------------- the network
@pytest.mark.parametrize(("height", "width"), [(32, 48), (64, 16)])
def test_untrained_x2_network_is_exactly_bilinear_x2_at_multiples_of_16(height, width):
    x = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(height))
    with torch.no_grad():
        y = tiny_msrn(2)(x)
    assert y.shape == (2, 3, 2 * height, 2 * width)
    assert torch.equal(y, bilinear_x2(x))


def test_untrained_x2_network_is_exactly_bilinear_x2_away_from_the_bottom_and_right_edges():
    x = torch.rand(1, 3, 37, 50, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = tiny_msrn(2)(x)
    assert y.shape == (1, 3, 74, 100)
    assert torch.equal(y[:, :, :-1, :-1], bilinear_x2(x)[:, :, :-1, :-1])


def test_untrained_x2_network_is_exactly_bilinear_x2_at_any_size():
    x = torch.rand(1, 3, 37, 50, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = tiny_msrn(2)(x)
    assert torch.equal(y, bilinear_x2(x))


def test_untrained_same_size_network_is_exactly_the_identity():
    x = torch.rand(1, 3, 37, 50, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(tiny_msrn(1)(x), x)


@pytest.mark.parametrize("scale", [1, 2])
def test_forward_levels_are_scale_times_each_pyramid_level(scale):
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        levels = tiny_msrn(scale).forward_levels(x)
    assert [tuple(level.shape) for level in levels] == [
        (1, 3, 8 * scale, 12 * scale),
        (1, 3, 16 * scale, 24 * scale),
        (1, 3, 32 * scale, 48 * scale),
    ]


# ------------------------------------------------------------------------------------------------ crops
def test_x2_sampler_cuts_ground_truth_crops_twice_the_size_over_the_same_area_through_every_flip():
    rng = np.random.default_rng(0)
    source = rng.random((40, 56, 3), dtype=np.float32)  # every pixel distinct: misalignment cannot hide
    truth = source.repeat(2, axis=0).repeat(2, axis=1)  # exact nearest-neighbour ×2
    sampler = PatchSampler([Pair(source, truth, "frame 1")], crop_size=16, batch_size=8, seed=3, scale=2)
    for _ in range(4):  # 32 crops: all 8 flips/rotations are drawn
        inputs, targets = sampler.next_batch()
        assert inputs.shape == (8, 3, 16, 16) and targets.shape == (8, 3, 32, 32)
        assert torch.equal(targets, inputs.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))


def test_ground_truth_one_and_a_half_times_the_input_is_refused_naming_the_pair():
    pair = Pair(np.zeros((32, 48, 3), np.float32), np.zeros((48, 72, 3), np.float32), "frame 7")
    with pytest.raises(ResolutionMismatchError, match=r"pair 1 \(frame 7\).*48×32.*72×48"):
        infer_scale([pair])
    with pytest.raises(ResolutionMismatchError, match=r"pair 1 \(frame 7\)"):
        validate_pairs([pair], crop_size=16, batch_size=1, scale=2)


def test_infer_scale_reads_the_first_pair():
    small, large = np.zeros((32, 48, 3), np.float32), np.zeros((64, 96, 3), np.float32)
    assert infer_scale([Pair(small, small)]) == 1
    assert infer_scale([Pair(small, large)]) == 2


def test_a_later_pair_at_another_scale_is_refused_naming_that_pair():
    small, large = np.zeros((32, 48, 3), np.float32), np.zeros((64, 96, 3), np.float32)
    pairs = [Pair(small, large, "frame 1"), Pair(small, small, "frame 2")]
    assert infer_scale(pairs) == 2
    with pytest.raises(ResolutionMismatchError, match=r"pair 2 \(frame 2\).*exactly 2 times"):
        validate_pairs(pairs, crop_size=16, batch_size=1, scale=2)
    with pytest.raises(ResolutionMismatchError, match=r"pair 2 \(frame 2\)"):
        PatchSampler(pairs, crop_size=16, batch_size=1, scale=2)


# --------------------------------------------------------------------------------------------- training
def write_x2_pairs(directory: Path, frames: tuple[int, ...] = (1, 2)) -> tuple[str, str]:
    """Input 32×48, Ground Truth 64×96 float EXRs: a sharp truth and its 2×2 box-averaged Input."""
    for frame in frames:
        truth = smooth(64, 96, seed=frame)
        truth[::2, ::2] *= 0.7  # fine detail a bilinear upscale cannot restore
        source = truth.reshape(32, 2, 48, 2, 3).mean(axis=(1, 3))
        imageio.write_frame(directory / f"in.{frame:04d}.exr", source, "rgb", pixel_type="float")
        imageio.write_frame(directory / f"gt.{frame:04d}.exr", truth, "rgb", pixel_type="float")
    return str(directory / "in.####.exr"), str(directory / "gt.####.exr")


def x2_config(directory: Path, **overrides: object) -> TrainConfig:
    source, truth = write_x2_pairs(directory)
    settings: dict[str, object] = dict(
        input=source,
        target=truth,
        out=str(directory / "run"),
        steps=2,
        model_size="small",
        batch_size=2,
        crop_size=16,
        checkpoint_interval=2,
        image_interval=2,
        precision="fp32",
        device="cpu",
        seed=1,
    )
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trained_x2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Trainer(x2_config(tmp_path_factory.mktemp("train_x2"))).run().model_path


def test_ground_truth_twice_the_input_trains_a_x2_network_with_contact_sheets(trained_x2):
    run = trained_x2.parent
    cat = catfile.load_cat(trained_x2)
    assert cat.manifest.scale == 2 and cat.manifest.arguments["scale"] == 2
    assert cat.manifest.kind == "model" and cat.manifest.training["steps"] == 2
    sheets = sorted((run / "contact_sheets").glob("contact_sheet.*.png"))
    assert sheets and all(path.stat().st_size > 0 for path in sheets)
    assert list((run / "checkpoints").glob("checkpoint.*.cat"))


def test_a_x2_network_as_initial_weights_for_a_same_size_job_is_refused_clearly(tmp_path, trained_x2):
    source = smooth(32, 48)
    imageio.write_frame(tmp_path / "in.0001.exr", source, "rgb", pixel_type="float")
    imageio.write_frame(tmp_path / "gt.0001.exr", source * 0.5, "rgb", pixel_type="float")
    config = TrainConfig(
        input=str(tmp_path / "in.####.exr"),
        target=str(tmp_path / "gt.####.exr"),
        out=str(tmp_path / "run"),
        steps=2,
        batch_size=1,
        crop_size=16,
        device="cpu",
        initial_weights=str(trained_x2),
    )
    with pytest.raises(CatFileError, match=r"×2 network.*Ground Truth is the same size.*without initial weights"):
        Trainer(config).run()


def test_a_same_size_network_as_initial_weights_for_a_x2_job_is_refused_clearly(tmp_path):
    arguments = {**msrn_arguments("small"), "width": 4}
    manifest = catfile.Manifest("msrn", arguments, ["R", "G", "B"], ["R", "G", "B"], Transfer().to_dict())
    same_size = catfile.save_cat(tmp_path / "x1.cat", manifest, MSRN(**arguments).state_dict())
    with pytest.raises(CatFileError, match=r"×1 network.*2× its Input"):
        Trainer(x2_config(tmp_path, initial_weights=str(same_size))).run()


# -------------------------------------------------------------------------------------------- inference
def test_x2_model_doubles_the_frame_whole_and_in_tiles(x2_model):
    model = infer.load_model(x2_model, "cpu")
    image = smooth(64, 96, seed=4)
    whole = infer.apply_model(model, image, tile=0)
    tiled = infer.apply_model(model, image, tile=48, overlap=16)
    assert whole.shape == tiled.shape == (128, 192, 3)
    upscaled = bilinear_x2(torch.from_numpy(image.transpose(2, 0, 1))[None])[0].permute(1, 2, 0).numpy()
    assert psnr(whole, upscaled) < 40, "the model must differ from bilinear for this test to mean anything"
    assert psnr(tiled, whole) >= 40  # measured 51 dB: seams blended away at a 16-pixel overlap


def test_trained_x2_model_loads_and_runs_at_sizes_that_are_not_multiples_of_16(trained_x2):
    model = infer.load_model(trained_x2, "cpu")
    assert model.scale == 2
    assert infer.apply_model(model, smooth(37, 50), tile=0).shape == (74, 100, 3)


def test_torchscript_export_of_a_x2_model_matches_apply_model(tmp_path, x2_model):
    image = smooth(37, 50, seed=5)
    scripted = torch.jit.load(str(export.export_torchscript(x2_model, tmp_path / "x2.pt")))
    with torch.no_grad():
        result = scripted(torch.from_numpy(image.transpose(2, 0, 1).copy())[None])[0].permute(1, 2, 0).numpy()
    eager = infer.apply_model(infer.load_model(x2_model, "cpu"), image, tile=0)
    assert result.shape == eager.shape == (74, 100, 3)
    assert np.abs(result - eager).max() <= 1e-4


def test_a_x2_torchscript_calls_only_operators_that_nukes_torch_1_12_has(tmp_path, x2_model):
    import re
    import zipfile

    path = export.export_torchscript(x2_model, tmp_path / "ops.pt")
    with zipfile.ZipFile(path) as archive:
        code = "\n".join(archive.read(n).decode() for n in archive.namelist() if n.endswith(".py"))
    called = set(re.findall(r"\b(?:torch|ops\.aten)\.([A-Za-z_0-9]+)\(", code))
    assert {"pixel_shuffle", "pixel_unshuffle"} <= called
    assert called <= export.TORCH_1_12_OPERATORS, called - export.TORCH_1_12_OPERATORS


def test_ground_truth_three_times_the_input_is_refused_naming_the_pair():
    pair = Pair(np.zeros((16, 16, 3), np.float32), np.zeros((48, 48, 3), np.float32), "frame 7")
    with pytest.raises(ResolutionMismatchError, match=r"frame 7.*exactly 2 times the Input"):
        infer_scale([pair])
