"""What the exported TorchScript may contain, so it keeps loading in the torch that Nuke ships.

Nuke 14 and 15 run torch 1.12 (Foundry, .cat File Creation Reference, Introduction). A TorchScript file is
Python-like source that the *loading* torch compiles again, so it loads only if every operator it names
exists there, on every branch, run or not. :data:`ALLOWED_OPERATORS` lists what our export (every MSRN size,
channel count, the ConvLSTM bottleneck and the ×2 upscaler head, plus padding, cropping, transfer and the
NaN/Inf sanitiser) really produces; :func:`check_operators` walks every method of the scripted module and
its submodules, inlined and into every block, and refuses anything else. ``tests/data/torch_1_12_ops.txt``
(names taken from the torch 1.12.1 wheel; provenance in its header) is what the tests hold this list to.

The archive's ``version`` record (the TorchScript file format) must not exceed
:data:`TORCH_1_12_MAX_FILE_FORMAT_VERSION`, torch 1.12.1's ``kMaxSupportedFileFormatVersion``.

Checked by hand with a real torch 1.12.1 (Python 3.10, outside this repository): files exported by
torch 2.13 for Small and Medium, rgb→rgb, rgba→alpha with the ConvLSTM, and the ×2 upscaler all loaded
and ran there.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any, Union

from copycat_nuke.errors import CatFileError

#: ``kMaxSupportedFileFormatVersion`` of torch 1.12.1 (torch/include/caffe2/serialize/versions.h in its
#: wheel: 0xA with ENABLE_UPGRADERS, which that header defines true). Newer torch writes the lowest version
#: the operators in the file need (4 for every variant of ours, with torch 2.13).
TORCH_1_12_MAX_FILE_FORMAT_VERSION = 10

#: Every operator the exported TorchScript may call, by qualified name (overloads are chosen by the loading
#: torch). Each is in torch 1.12.1 (tests/data/torch_1_12_ops.txt). Adding one: check it is in that file,
#: and that the exported files still load in torch 1.12 (see the module docstring).
ALLOWED_OPERATORS = frozenset(
    {
        # the network: convolutions, activations, the pyramid and the ConvLSTM gates
        "aten::conv2d",
        "aten::conv_transpose2d",  # the decoder's ×2 transposed convolutions
        "aten::relu",
        "aten::relu_",
        "aten::sigmoid",  # ConvLSTM gates
        "aten::tanh",  # ConvLSTM cell
        "aten::chunk",  # ConvLSTM: one conv's output split into the four gates
        "aten::avg_pool2d",  # the input pyramid
        "aten::upsample_bilinear2d",  # ×2 between levels (not F.interpolate: see copycat_nuke.export)
        "aten::pixel_shuffle",  # the ×2 upscaler's head (torch ≥ 1.0)
        "aten::pixel_unshuffle",  # the coarser prediction back onto an upscaler's input grid (torch ≥ 1.8)
        "aten::new_zeros",  # empty LSTM state / first prediction, on the input's device and dtype
        "aten::add",
        "aten::sub",
        "aten::mul",
        "aten::div",
        "aten::cat",
        # reflect padding (flip + cat), cropping and shape arithmetic
        "aten::flip",
        "aten::slice",
        "aten::size",
        "aten::dim",
        "aten::remainder",
        "aten::floordiv",
        "aten::lt",
        "aten::gt",
        "aten::eq",
        "aten::ne",
        "aten::__getitem__",
        "aten::len",
        "aten::append",
        "aten::reverse",  # the pyramid list, coarse to fine
        "aten::str",
        "aten::format",  # the error message of a too-small frame
        "aten::__is__",
        "aten::__isnot__",
        "aten::__not__",
        "aten::__lshift__",  # nn.Conv2d's scripted padding-mode branch
        "prim::min",
        "prim::dtype",
        # transfer (linear ↔ working space) and the NaN/Inf sanitiser
        "aten::abs",
        "aten::clamp",
        "aten::copysign",  # torch ≥ 1.8: why Nuke 13 (torch 1.6) cannot load these files
        "aten::expm1",
        "aten::log1p",
        "aten::is_floating_point",
        "aten::to",
        "aten::nan_to_num",  # torch ≥ 1.8
    }
)

#: IR nodes (control flow, constants, lists, attributes) that every scripted module has; not operators,
#: but they must exist in the loading torch's IR too (interned_strings.h of torch 1.12.1 declares them).
ALLOWED_IR_NODES = frozenset(
    {
        "prim::Constant",
        "prim::GetAttr",
        "prim::If",
        "prim::Loop",
        "prim::ListConstruct",
        "prim::ListUnpack",
        "prim::TupleConstruct",
        "prim::TupleUnpack",
        "prim::RaiseException",
        "prim::Uninitialized",
        "prim::unchecked_cast",
    }
)

ALLOWED = ALLOWED_OPERATORS | ALLOWED_IR_NODES


def _walk(block: Any, found: dict[str, str], where: str) -> None:
    for node in block.nodes():
        found.setdefault(node.kind(), where)
        for inner in node.blocks():
            _walk(inner, found, where)


def used_operators(scripted: Any) -> dict[str, str]:
    """Every node kind in a scripted module (all methods of it and its submodules, inlined, every block),
    each with the first ``submodule.method`` it was found in."""
    import torch

    found: dict[str, str] = {}
    for name, module in scripted.named_modules():
        for method in module._c._method_names():
            graph = module._c._get_method(method).graph.copy()
            torch._C._jit_pass_inline(graph)  # functions and methods it calls, in place
            _walk(graph, found, f"{name or type(scripted).__name__}.{method}")
    return found


def check_operators(scripted: Any, model: str) -> None:
    """Refuse a scripted module that uses an operator or IR node outside :data:`ALLOWED`.

    Raises:
        CatFileError: one line naming the operator, where it is used and the model.
    """
    unexpected = {kind: where for kind, where in used_operators(scripted).items() if kind not in ALLOWED}
    if unexpected:
        kind = sorted(unexpected)[0]
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CatFileError(
            f"{model}: the TorchScript export uses {kind} (in {unexpected[kind]}){more}, which is not on the list "
            "of operators checked against Nuke's torch 1.12 (copycat_nuke/torchscript_ops.py): this model cannot "
            "be exported for Nuke's Inference node; run it with the copycat_nuke Inference node instead"
        )


def file_format_version(archive: Union[bytes, str]) -> int:
    """The ``version`` record of a saved TorchScript archive (bytes or a path)."""
    source = io.BytesIO(archive) if isinstance(archive, bytes) else archive
    with zipfile.ZipFile(source) as opened:
        names = [name for name in opened.namelist() if name.count("/") == 1 and name.endswith("/version")]
        if len(names) != 1:
            where = archive if isinstance(archive, str) else "the archive"
            raise CatFileError(f"{where}: no TorchScript version record: not a TorchScript file")
        return int(opened.read(names[0]).decode().strip())


def check_file_format(archive: bytes, model: str) -> None:
    """Refuse an archive whose file-format version torch 1.12 cannot read."""
    version = file_format_version(archive)
    if version > TORCH_1_12_MAX_FILE_FORMAT_VERSION:
        raise CatFileError(
            f"{model}: this torch writes TorchScript file format {version}, and Nuke's torch 1.12 reads up to "
            f"{TORCH_1_12_MAX_FILE_FORMAT_VERSION}: export with an older torch (docs/nuke-native.md)"
        )


__all__ = [
    "ALLOWED",
    "ALLOWED_IR_NODES",
    "ALLOWED_OPERATORS",
    "TORCH_1_12_MAX_FILE_FORMAT_VERSION",
    "check_file_format",
    "check_operators",
    "file_format_version",
    "used_operators",
]
