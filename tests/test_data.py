"""Specification of copycat_nuke.data: frame pairs -> random training patches."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st

from copycat_nuke.data import (
    Pair,
    PatchSampler,
    epochs_for_steps,
    max_batch_size,
    steps_for_epochs,
    validate_pairs,
)
from copycat_nuke.errors import ConfigError, CopyCatError, ResolutionMismatchError, TrainingError


def noise(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, c), dtype=np.float32)


def pixelwise(rgb: np.ndarray, channel_axis: int) -> np.ndarray:
    """A per-pixel function rgb -> one channel: holds on a crop only if the crop's pixels moved together."""
    r, g, b = np.moveaxis(rgb, channel_axis, 0)
    return np.expand_dims(0.2 * r + 0.7 * g * g + 0.1 * b, channel_axis)


def crops_touching(mask_batch: torch.Tensor) -> np.ndarray:
    return (mask_batch != 0).flatten(1).any(dim=1).numpy()


def dihedral_views(image: np.ndarray) -> list[np.ndarray]:
    rotations = [np.rot90(image, k) for k in range(4)]
    return rotations + [r[:, ::-1] for r in rotations]


# --- batches -----------------------------------------------------------------------------------------------


def test_batches_are_float32_contiguous_n_c_h_w() -> None:
    pairs = [Pair(noise(40, 56, 3, seed=i), noise(40, 56, 4, seed=10 + i), f"frame {i}") for i in range(2)]
    sampler = PatchSampler(pairs, crop_size=32, batch_size=5, seed=1)
    inputs, targets = sampler.next_batch()
    assert inputs.shape == (5, 3, 32, 32) and targets.shape == (5, 4, 32, 32)
    for batch in (inputs, targets):
        assert batch.dtype == torch.float32 and batch.is_contiguous()
    assert (sampler.in_channels, sampler.out_channels, sampler.crop_size) == (3, 4, 32)


def test_batch_larger_than_number_of_pairs_is_fine() -> None:
    sampler = PatchSampler([Pair(noise(32, 32, 3), noise(32, 32, 3, 1))], crop_size=16, batch_size=9)
    assert sampler.next_batch()[0].shape == (9, 3, 16, 16)


@pytest.mark.parametrize("out_channels", [1, 3])
def test_same_flip_and_rotation_applied_to_input_and_target(out_channels: int) -> None:
    image = noise(48, 64, 3, seed=3)
    target = pixelwise(image, 2) if out_channels == 1 else np.sqrt(image[:, :, ::-1])
    sampler = PatchSampler([Pair(image, target, "frame 1")], crop_size=16, batch_size=32, seed=2)
    for _ in range(4):
        inputs, targets = sampler.next_batch()
        expected = pixelwise(inputs.numpy(), 1) if out_channels == 1 else np.sqrt(inputs.numpy()[:, ::-1])
        np.testing.assert_allclose(targets.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_all_eight_flips_and_rotations_occur() -> None:
    frame = np.arange(16 * 16, dtype=np.float32).reshape(16, 16, 1)
    views = dihedral_views(frame[:, :, 0])
    seen = set()
    sampler = PatchSampler([Pair(frame, frame, "frame 1")], crop_size=16, batch_size=16, seed=0)
    for _ in range(4):
        for crop in sampler.next_batch()[0][:, 0].numpy():
            matches = [k for k, view in enumerate(views) if np.array_equal(crop, view)]
            assert len(matches) == 1
            seen.add(matches[0])
    assert seen == set(range(8))


def test_without_augmentation_crops_are_upright() -> None:
    frame = np.arange(32 * 32, dtype=np.float32).reshape(32, 32, 1)
    sampler = PatchSampler([Pair(frame, frame)], crop_size=16, batch_size=16, augment=False)
    for crop in sampler.next_batch()[0][:, 0].numpy():
        top, left = divmod(int(crop[0, 0]), 32)
        np.testing.assert_array_equal(crop, frame[top : top + 16, left : left + 16, 0])


# --- crop size ---------------------------------------------------------------------------------------------


def test_crop_larger_than_frame_is_clipped_to_a_multiple_of_16_with_warning() -> None:
    pairs = [Pair(noise(100, 120, 3), noise(100, 120, 3, 1)), Pair(noise(40, 72, 3), noise(40, 72, 3), "f2")]
    with pytest.warns(UserWarning, match=r"pair 2 \(f2\) at 72×40 pixels.*32×32 crops") as record:
        sampler = PatchSampler(pairs, crop_size=256)
    assert "256" in str(record[0].message)
    assert sampler.crop_size == 32
    assert sampler.next_batch()[1].shape == (4, 3, 32, 32)


def test_crop_not_a_multiple_of_16_is_rounded_down_with_warning() -> None:
    with pytest.warns(UserWarning, match="multiple of 16"):
        sampler = PatchSampler([Pair(noise(64, 64, 3), noise(64, 64, 3))], crop_size=40)
    assert sampler.crop_size == 32


def test_crop_that_fits_gives_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert PatchSampler([Pair(noise(64, 80, 3), noise(64, 80, 3))], crop_size=64).crop_size == 64


# --- where crops land --------------------------------------------------------------------------------------


def uniform_hit_rate(frame: int, crop: int, start: int, size: int) -> float:
    """Chance that a uniformly placed crop overlaps [start, start + size) along one axis."""
    tops = range(frame - crop + 1)
    return sum(top < start + size and start < top + crop for top in tops) / len(tops)


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_difference_share_of_crops_lands_on_a_small_change(share: float) -> None:
    frame, crop, y, x, size = 256, 64, 100, 150, 8
    image = noise(frame, frame, 3)
    target = image.copy()
    target[y : y + size, x : x + size] += 0.5
    pair = Pair(image, target, "frame 1001")
    sampler = PatchSampler([pair], crop_size=crop, batch_size=250, difference_share=share, seed=4)
    hits = np.concatenate([crops_touching(t - i) for i, t in (sampler.next_batch() for _ in range(8))])
    uniform = uniform_hit_rate(frame, crop, y, size) * uniform_hit_rate(frame, crop, x, size)
    expected = share + (1 - share) * uniform
    assert abs(hits.mean() - expected) < 0.05, (hits.mean(), expected)
    if share == 1.0:
        assert hits.all()


def test_change_in_a_partial_corner_cell_is_found() -> None:
    image = noise(203, 250, 3)
    target = image.copy()
    target[200:, 247:] = 0.0  # 3×3 pixels in the frame's last, partial, cell
    sampler = PatchSampler([Pair(image, target)], crop_size=32, batch_size=64, difference_share=1.0)
    inputs, targets = sampler.next_batch()
    assert crops_touching(targets - inputs).all()


def test_pair_without_differences_falls_back_to_uniform_crops() -> None:
    frame = np.arange(128 * 128, dtype=np.float32).reshape(128, 128, 1)
    batches = [
        PatchSampler(
            [Pair(frame, frame.copy())], crop_size=16, batch_size=400, difference_share=share, seed=5
        ).next_batch()[0]
        for share in (0.0, 1.0)
    ]
    torch.testing.assert_close(batches[0], batches[1])  # nothing to centre on: the share changes nothing
    upright_corners = np.sort(batches[1][:, 0].flatten(1).numpy(), axis=1)[:, 0].astype(int)
    tops = upright_corners // 128  # the smallest value of a crop is its top-left pixel, whatever the flip
    assert len(set(tops)) > 80 and abs(tops.mean() - 56) < 6  # uniform over 0..112


def test_rgb_to_alpha_crops_centre_on_the_matte_edge() -> None:
    yy, xx = np.mgrid[:128, :128]
    matte = ((yy - 70) ** 2 + (xx - 40) ** 2 < 10**2).astype(np.float32)[:, :, None]
    pair = Pair(noise(128, 128, 3), matte, "frame 1001 (rgb -> alpha)")
    edge_only = PatchSampler([pair], crop_size=32, batch_size=200, difference_share=1.0, seed=6)
    inputs, targets = edge_only.next_batch()
    assert inputs.shape == (200, 3, 32, 32) and targets.shape == (200, 1, 32, 32)
    flat = targets.flatten(1)
    assert bool(((flat.min(dim=1).values == 0) & (flat.max(dim=1).values == 1)).all())
    uniform = PatchSampler([pair], crop_size=32, batch_size=200, difference_share=0.0, seed=6)
    assert crops_touching(uniform.next_batch()[1]).mean() < 0.5


# --- determinism and resume --------------------------------------------------------------------------------


def small_pairs() -> list[Pair]:
    pairs = []
    for i in range(3):
        image = noise(48, 40, 3, seed=i)
        target = image.copy()
        target[10:14, 20:30] = 1.0
        pairs.append(Pair(image, target, f"frame {1001 + i}"))
    return pairs


Batches = list[tuple[torch.Tensor, torch.Tensor]]


def draw(sampler: PatchSampler, n: int) -> Batches:
    return [sampler.next_batch() for _ in range(n)]


def assert_same_batches(a: Batches, b: Batches) -> None:
    assert len(a) == len(b)
    for (ai, at), (bi, bt) in zip(a, b):
        assert torch.equal(ai, bi) and torch.equal(at, bt)


def test_same_seed_and_rank_draw_the_same_batches() -> None:
    assert_same_batches(
        draw(PatchSampler(small_pairs(), crop_size=16, seed=3), 3),
        draw(PatchSampler(small_pairs(), crop_size=16, seed=3), 3),
    )


def test_resume_reproduces_uninterrupted_batches() -> None:
    uninterrupted = draw(PatchSampler(small_pairs(), crop_size=16, batch_size=3, seed=11), 5)
    interrupted = PatchSampler(small_pairs(), crop_size=16, batch_size=3, seed=11)
    draw(interrupted, 2)
    saved = yaml.safe_load(yaml.safe_dump(interrupted.state_dict()))
    resumed = PatchSampler(small_pairs(), crop_size=16, batch_size=3, seed=0)  # the saved seed wins
    resumed.load_state_dict(saved)
    assert_same_batches(draw(resumed, 3), uninterrupted[2:])
    assert resumed.seed == 11


def test_state_saved_by_rank_0_resumes_another_rank_where_it_was() -> None:
    rank1_uninterrupted = draw(PatchSampler(small_pairs(), crop_size=16, seed=7, rank=1), 5)
    rank0 = PatchSampler(small_pairs(), crop_size=16, seed=7, rank=0)
    draw(rank0, 2)
    rank1 = PatchSampler(small_pairs(), crop_size=16, seed=7, rank=1)
    rank1.load_state_dict(yaml.safe_load(yaml.safe_dump(rank0.state_dict())))
    assert_same_batches(draw(rank1, 3), rank1_uninterrupted[2:])


def test_different_ranks_draw_different_batches() -> None:
    (a, _), (b, _) = (PatchSampler(small_pairs(), crop_size=16, seed=7, rank=r).next_batch() for r in (0, 1))
    assert not torch.equal(a, b)


def test_unreadable_or_newer_state_is_a_clear_error() -> None:
    sampler = PatchSampler(small_pairs(), crop_size=16)
    state = sampler.state_dict()
    with pytest.raises(TrainingError, match="format 2"):
        sampler.load_state_dict({**state, "format": 2})
    with pytest.raises(TrainingError, match="draws"):
        sampler.load_state_dict({k: v for k, v in state.items() if k != "draws"})
    with pytest.raises(TrainingError, match="cannot be read"):
        sampler.load_state_dict({**state, "bit_generator": {"bit_generator": "MT19937"}})


# --- validation --------------------------------------------------------------------------------------------


def test_no_pairs_is_an_error() -> None:
    with pytest.raises(TrainingError, match="at least 1 Input/Ground Truth pair"):
        PatchSampler([])


def test_input_and_ground_truth_of_different_size_is_an_error_naming_the_pair() -> None:
    pairs = [Pair(noise(32, 32, 3), noise(32, 32, 3)), Pair(noise(64, 48, 3), noise(32, 48, 3), "frame 1002")]
    with pytest.raises(ResolutionMismatchError, match=r"pair 2 \(frame 1002\).*48×64.*48×32") as error:
        validate_pairs(pairs)
    assert isinstance(error.value, CopyCatError)


@pytest.mark.parametrize("role", ["Input", "Ground Truth"])
def test_nan_or_inf_is_an_error_naming_the_pair_and_count(role: str) -> None:
    bad = noise(32, 32, 3)
    bad[0, :5, 0] = np.nan
    bad[3, 3] = np.inf
    pair = Pair(bad, noise(32, 32, 3), "frame 7") if role == "Input" else Pair(noise(32, 32, 3), bad, "frame 7")
    with pytest.raises(TrainingError, match=rf"pair 1 \(frame 7\): the {role} has 8 NaN or infinite"):
        PatchSampler([pair], crop_size=16)


def test_frame_smaller_than_16_pixels_is_an_error() -> None:
    with pytest.raises(TrainingError, match=r"pair 1 \(tiny\).*20×12.*at least 16×16"):
        validate_pairs([Pair(noise(12, 20, 3), noise(12, 20, 3), "tiny")])


def test_channels_must_agree_between_pairs() -> None:
    pairs = [Pair(noise(32, 32, 3), noise(32, 32, 1), "a"), Pair(noise(32, 32, 4), noise(32, 32, 1), "b")]
    with pytest.raises(TrainingError, match=r"pair 2 \(b\): the Input has 4 channels but pair 1 \(a\) has 3"):
        validate_pairs(pairs)


def test_arrays_that_are_not_images_are_an_error() -> None:
    with pytest.raises(TrainingError, match="expected an H×W×C image"):
        validate_pairs([Pair(np.zeros((2, 32, 32, 3)), np.zeros((32, 32, 3)))])


@pytest.mark.parametrize(
    "settings",
    [{"crop_size": 8}, {"batch_size": 0}, {"difference_share": 1.5}, {"seed": -1}, {"rank": 1.0}],
)
def test_impossible_settings_are_config_errors(settings: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        PatchSampler([Pair(noise(32, 32, 3), noise(32, 32, 3))], **settings)  # type: ignore[arg-type]


def test_pairs_become_float32_contiguous_and_2d_mattes_one_channel() -> None:
    image = np.asfortranarray(np.random.default_rng(0).random((32, 24, 3)))
    [pair] = validate_pairs([Pair(image, np.zeros((32, 24)), "frame 1")])
    assert pair.input.dtype == np.float32 and pair.input.flags.c_contiguous
    assert pair.target.shape == (32, 24, 1) and pair.label == "frame 1"
    ready = noise(32, 24, 3)
    assert validate_pairs([Pair(ready, ready)])[0].input is ready  # no copy when already right


# --- steps, epochs and batch size ------------------------------------------------------------------------


def test_steps_for_epochs_counts_like_nuke() -> None:
    assert steps_for_epochs(10000, 8, 4) == 20000
    assert steps_for_epochs(1, 3, 2) == 2
    assert steps_for_epochs(2.5, 3, 2) == 4
    assert steps_for_epochs(0, 3, 2) == 0
    assert epochs_for_steps(20000, 8, 4) == 10000.0
    with pytest.raises(ConfigError):
        steps_for_epochs(-1, 3, 2)
    with pytest.raises(ConfigError):
        steps_for_epochs(1, 0, 2)


@given(st.integers(0, 10**6), st.integers(1, 500), st.integers(1, 256))
def test_steps_for_whole_epochs_is_the_exact_ceiling(epochs: int, pairs: int, batch: int) -> None:
    steps = steps_for_epochs(epochs, pairs, batch)
    assert steps == math.ceil(Fraction(epochs * pairs, batch))
    assert epochs_for_steps(steps, pairs, batch) >= epochs
    if steps:
        assert epochs_for_steps(steps - 1, pairs, batch) < epochs


@given(st.integers(0, 10**7), st.integers(1, 500), st.integers(1, 256))
def test_steps_epochs_steps_round_trips(steps: int, pairs: int, batch: int) -> None:
    assert steps_for_epochs(epochs_for_steps(steps, pairs, batch), pairs, batch) == steps


def test_max_batch_size_counts_non_overlapping_crops() -> None:
    hd = np.broadcast_to(np.float32(0), (1080, 1920, 3))
    assert max_batch_size([Pair(hd, hd), Pair(hd, hd)], crop_size=256) == 56
    small = [Pair(noise(40, 72, 3), noise(40, 72, 3))]
    assert max_batch_size(small, crop_size=256) == 2  # crops clipped to 32: 1 × 2
