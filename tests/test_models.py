"""The MSRN: sizes, identity at initialisation, any frame size, any channels, export-friendliness."""

import pytest
import torch

from copycat_nuke.errors import ConfigError
from copycat_nuke.models import MSRN, build_model, msrn_arguments, validate_arguments


def _count_convs(model: torch.nn.Module) -> int:
    return sum(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in model.modules())


def test_medium_is_the_42_layer_6_9m_weight_network():
    model = build_model("msrn", msrn_arguments("medium"))
    assert _count_convs(model) == 42
    assert sum(p.numel() for p in model.parameters()) == 6_881_251


def test_sizes_grow_small_medium_large():
    counts = [
        sum(p.numel() for p in build_model("msrn", msrn_arguments(s)).parameters())
        for s in ("small", "medium", "large")
    ]
    assert counts[0] < counts[1] < counts[2]


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (2, 3, 37, 53), (1, 3, 5, 9)])
def test_untrained_residual_network_is_the_identity_at_any_size(shape):
    torch.manual_seed(0)
    model = MSRN(3, 3, width=4).eval()
    x = torch.rand(shape)
    with torch.no_grad():
        assert torch.equal(model(x), x)


@pytest.mark.parametrize(("cin", "cout"), [(3, 1), (4, 4), (3, 4), (1, 3)])
def test_any_channel_counts_in_and_out(cin, cout):
    model = MSRN(cin, cout, width=4).eval()
    with torch.no_grad():
        y = model(torch.rand(1, cin, 24, 40))
    assert y.shape == (1, cout, 24, 40)


def test_levels_run_coarse_to_fine_at_half_scale():
    model = MSRN(3, 3, width=4)
    outputs = model.forward_levels(torch.rand(1, 3, 64, 32))
    assert [tuple(o.shape[2:]) for o in outputs] == [(16, 8), (32, 16), (64, 32)]


def test_same_weights_at_every_level():
    # one set of encoder/decoder weights, however many levels
    assert sum(p.numel() for p in MSRN(3, 3, 8, levels=2).parameters()) == sum(
        p.numel() for p in MSRN(3, 3, 8, levels=4).parameters()
    )


@pytest.mark.parametrize("lstm", [False, True])
def test_torchscript_matches_eager(lstm):
    torch.manual_seed(1)
    model = MSRN(3, 3, width=4, lstm=lstm).eval()
    for p in model.out.parameters():
        torch.nn.init.normal_(p, std=0.1)  # not the identity, so the comparison means something
    scripted = torch.jit.script(model)
    x = torch.rand(1, 3, 29, 35)
    with torch.no_grad():
        assert torch.allclose(scripted(x), model(x), atol=1e-6)


def test_gradients_reach_every_weight():
    model = MSRN(3, 1, width=4, lstm=True)
    model.forward_levels(torch.rand(2, 3, 32, 32))[-1].mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"width": 100000}, "outside"),
        ({"width": 3.5}, "must be int"),
        ({"lstm": 1}, "must be bool"),
        ({"in_channels": True}, "must be int"),
        ({"evil": 1}, "no argument"),
    ],
)
def test_bad_arguments_are_refused_before_building(arguments, fragment):
    with pytest.raises(ConfigError, match=fragment):
        validate_arguments("msrn", arguments)


def test_unknown_architecture_is_named():
    with pytest.raises(ConfigError, match="'unet'"):
        validate_arguments("unet", {})


def test_unknown_model_size_lists_the_sizes():
    with pytest.raises(ConfigError, match="small, medium, large"):
        msrn_arguments("huge")
