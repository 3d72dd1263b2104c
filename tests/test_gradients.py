"""The gradient guard: spikes clipped to a multiple of the recent median norm, sustained growth let through."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from copycat_nuke.gradients import GradientGuard


def parameters_with_norm(norm: float) -> list[nn.Parameter]:
    """Two parameters whose gradients together have the given L2 norm (3-4-5 split)."""
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([0.6 * norm]), torch.tensor([0.8 * norm])
    return [a, b]


def total_norm(params: list[nn.Parameter]) -> float:
    return float(torch.linalg.vector_norm(torch.cat([p.grad for p in params])))


def test_a_spike_is_clipped_to_the_factor_times_the_recent_median():
    guard = GradientGuard(4.0, history=100, warmup=10)
    for _ in range(20):
        guard(parameters_with_norm(1.0))
    spike = parameters_with_norm(100.0)
    assert guard(spike) == pytest.approx(100.0)  # the norm before clipping
    assert total_norm(spike) == pytest.approx(4.0)
    assert [float(p.grad) for p in spike] == pytest.approx([2.4, 3.2])  # the same direction
    assert guard.clipped == 1
    assert guard.norms[-1] == pytest.approx(4.0)  # remembered at its limit: the next limit stays 4
    normal = parameters_with_norm(3.9)
    guard(normal)
    assert total_norm(normal) == pytest.approx(3.9) and guard.clipped == 1


def test_nothing_is_clipped_while_warming_up_or_when_off():
    guard = GradientGuard(4.0, warmup=10)
    for norm in [1.0, 50.0, 1.0, 900.0]:
        params = parameters_with_norm(norm)
        guard(params)
        assert total_norm(params) == pytest.approx(norm)
    off = GradientGuard(0.0)
    for norm in [1.0] * 20 + [1e6]:
        params = parameters_with_norm(norm)
        off(params)
        assert total_norm(params) == pytest.approx(norm)
    assert guard.clipped == off.clipped == 0 and not off.enabled and off.norms == []


def test_sustained_growth_gets_through_within_a_history():
    guard = GradientGuard(4.0, history=20, warmup=5)
    for _ in range(20):
        guard(parameters_with_norm(1.0))
    passed = []
    for _ in range(30):  # the gradients are now 50× larger for good: 4×, then 16×, then all of it
        params = parameters_with_norm(50.0)
        guard(params)
        passed.append(total_norm(params))
    assert passed[0] == pytest.approx(4.0)
    assert passed[11] == pytest.approx(16.0)  # the median is 4 once more than half the history was clipped to 4
    assert passed[-1] == pytest.approx(50.0)  # the limit rose with the remembered (clipped) norms
    assert all(later >= earlier - 1e-6 for earlier, later in zip(passed, passed[1:]))


def test_a_non_finite_norm_is_returned_and_changes_nothing():
    guard = GradientGuard(4.0, warmup=1)
    guard(parameters_with_norm(1.0))
    params = parameters_with_norm(1.0)
    params[0].grad = torch.tensor([math.inf])
    assert guard(params) == math.inf
    assert guard.norms == [1.0] and guard.clipped == 0 and float(params[1].grad) == pytest.approx(0.8)


def test_state_round_trips_and_bad_state_is_refused():
    guard = GradientGuard(4.0, history=5, warmup=2)
    for norm in [1.0, 2.0, 3.0, 100.0, 1.0, 2.0, 1.5]:
        guard(parameters_with_norm(norm))
    copy = GradientGuard(4.0, history=5, warmup=2)
    copy.load_state_dict(guard.state_dict())
    assert copy.norms == guard.norms and copy.clipped == guard.clipped == 1 and len(copy.norms) == 5
    assert copy.limit() == guard.limit()
    for bad in (["x"], [math.nan], [-1.0], [True], "1.0"):
        with pytest.raises(ValueError, match="norms must be a list of finite numbers"):
            copy.load_state_dict({"norms": bad, "clipped": 0})
    for bad in (1.5, -1, True):
        with pytest.raises(ValueError, match="clipped must be a whole number"):
            copy.load_state_dict({"norms": [], "clipped": bad})


@pytest.mark.parametrize("factor", [0.5, -1.0, math.nan, math.inf])
def test_a_factor_between_zero_and_one_is_refused(factor):
    with pytest.raises(ValueError, match="0 \\(off\\) or at least 1"):
        GradientGuard(factor)


@pytest.mark.parametrize(("history", "warmup"), [(0, 0), (10, 0), (10, 11)])
def test_a_history_shorter_than_its_warm_up_is_refused(history, warmup):
    with pytest.raises(ValueError, match="warmup <= history"):
        GradientGuard(4.0, history=history, warmup=warmup)


def test_parameters_without_gradients_are_skipped():
    guard = GradientGuard(4.0, warmup=1)
    frozen = nn.Parameter(torch.zeros(3))
    assert guard([]) == 0.0 and guard([frozen]) == 0.0 and guard.norms == []
    assert guard([frozen, *parameters_with_norm(2.0)]) == pytest.approx(2.0) and frozen.grad is None
