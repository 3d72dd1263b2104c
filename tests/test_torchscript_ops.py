"""The TorchScript export keeps to operators torch 1.12 (Nuke 14/15) has, and to a file format it reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from copycat_nuke import catfile, export, torchscript_ops
from copycat_nuke.errors import CatFileError
from copycat_nuke.models import build_model, msrn_arguments
from copycat_nuke.transfer import Transfer

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:DeprecationWarning"),
]

TORCH_1_12_OPS = Path(__file__).parent / "data" / "torch_1_12_ops.txt"

#: (size, channels in, channels out, ConvLSTM, scale): every kind of network the export has to handle.
VARIANTS = [
    ("small", ["R", "G", "B"], ["R", "G", "B"], False, 1),
    ("medium", ["R", "G", "B"], ["R", "G", "B"], False, 1),
    ("large", ["R", "G", "B"], ["R", "G", "B"], False, 1),
    ("small", ["R", "G", "B", "A"], ["A"], True, 1),
    ("small", ["A"], ["R", "G", "B"], False, 1),
    ("small", ["R", "G", "B"], ["R", "G", "B"], False, 2),
]


def torch_1_12_names() -> set[str]:
    lines = TORCH_1_12_OPS.read_text().splitlines()
    return {line for line in lines if line and not line.startswith("#")}


def make_cat(path: Path, size: str, channels_in: list[str], channels_out: list[str], lstm: bool, scale: int) -> Path:
    arguments = msrn_arguments(size, len(channels_in), len(channels_out), lstm=lstm, scale=scale)
    torch.manual_seed(0)
    network = build_model("msrn", arguments)
    manifest = catfile.Manifest("msrn", arguments, channels_in, channels_out, Transfer().to_dict(), scale=scale)
    return catfile.save_cat(path, manifest, network.state_dict())


def test_the_data_file_says_where_it_came_from_and_has_what_torch_1_12_is_known_to_have():
    header = TORCH_1_12_OPS.read_text().split("\naten::", 1)[0]
    assert "torch-1.12.1-cp310-cp310-manylinux1_x86_64.whl" in header and "native_functions.yaml" in header
    names = torch_1_12_names()
    assert all(re.fullmatch(r"(aten|prim)::\w+", name) for name in names)
    assert {"aten::conv2d", "aten::copysign", "aten::nan_to_num", "prim::If", "prim::Loop"} <= names
    # added in torch 2.x: a file really taken from 1.12 lacks them
    assert not {"aten::_upsample_lanczos2d_aa", "aten::scaled_dot_product_attention"} & names


def test_the_allow_list_is_a_subset_of_what_torch_1_12_has():
    missing = torchscript_ops.ALLOWED - torch_1_12_names()
    assert not missing, missing
    assert torchscript_ops.ALLOWED_OPERATORS.isdisjoint(torchscript_ops.ALLOWED_IR_NODES)


@pytest.mark.parametrize(("size", "channels_in", "channels_out", "lstm", "scale"), VARIANTS)
def test_every_exported_variant_uses_only_allowed_operators(tmp_path, size, channels_in, channels_out, lstm, scale):
    path = make_cat(tmp_path / "model.cat", size, channels_in, channels_out, lstm, scale)
    scripted = torch.jit.script(export.export_module(path))
    used = torchscript_ops.used_operators(scripted)
    assert set(used) <= torchscript_ops.ALLOWED, {k: v for k, v in used.items() if k not in torchscript_ops.ALLOWED}
    assert {"aten::conv2d", "aten::flip", "aten::copysign"} <= set(used)  # the walk sees inlined calls
    if scale == 2:
        assert {"aten::pixel_shuffle", "aten::pixel_unshuffle"} <= set(used)
    if lstm:
        assert {"aten::sigmoid", "aten::chunk"} <= set(used)


def test_a_temporal_model_is_refused_before_anything_is_written(tmp_path):
    arguments = msrn_arguments("small", 3, 3, temporal=1)
    manifest = catfile.Manifest("msrn", arguments, ["R", "G", "B"], ["R", "G", "B"], Transfer().to_dict())
    path = catfile.save_cat(tmp_path / "temporal.cat", manifest, build_model("msrn", arguments).state_dict())
    with pytest.raises(CatFileError, match="temporal"):
        export.export_torchscript(path, tmp_path / "temporal.pt")
    assert not (tmp_path / "temporal.pt").exists()


def test_an_operator_off_the_list_is_refused_in_one_line_naming_it_and_the_model(tmp_path, monkeypatch):
    path = make_cat(tmp_path / "model.cat", *VARIANTS[0])
    monkeypatch.setattr(torchscript_ops, "ALLOWED", torchscript_ops.ALLOWED - {"aten::flip"})
    with pytest.raises(CatFileError) as raised:
        export.export_torchscript(path, tmp_path / "model.pt")
    message = str(raised.value)
    assert "aten::flip" in message and str(path) in message and "\n" not in message
    assert not (tmp_path / "model.pt").exists()


def test_the_archive_s_file_format_is_one_torch_1_12_reads(tmp_path):
    path = make_cat(tmp_path / "model.cat", *VARIANTS[0])
    exported = export.export_torchscript(path, tmp_path / "model.pt")
    version = torchscript_ops.file_format_version(str(exported))
    assert 1 <= version <= torchscript_ops.TORCH_1_12_MAX_FILE_FORMAT_VERSION == 10


def test_a_newer_file_format_is_refused(tmp_path):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/version", "11\n")
    with pytest.raises(CatFileError, match=r"file format 11.*up to 10"):
        torchscript_ops.check_file_format(buffer.getvalue(), "model.cat")
