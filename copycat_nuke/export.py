"""Export a ``.cat`` as TorchScript (for Nuke's CatFileCreator) or ONNX (for onnxruntime, Flame, Resolve…).

Both files hold the same :class:`ExportModule`: one input ``1×C_in×H×W`` of **scene-linear** values (what
Nuke's Inference node feeds), one output ``1×C_out×(H·s)×(W·s)`` of scene-linear values, for any H×W of at
least 16×16. Inside ``forward``: NaN/±Inf → 0/±65504, linear → the model's working space (its
``TransferModule``), reflect-padding to the network's multiple of 16, the network, cropping back, and
working space → linear. Every new tensor is made from the input (``new_zeros``, slices, ``cat``), so it
follows the input's device and dtype: Nuke's "Use GPU" and half-precision toggles work.

**Old Nukes.** Nuke 14 and 15 run torch 1.12, Nuke 13 torch 1.6, and TorchScript files load only if every
operator they mention exists in the loading torch. The exported code therefore avoids:

* ``F.pad`` — scripted by torch ≥ 1.13 as ``aten::pad``, unknown to 1.12: padding is ``flip`` + ``cat``;
* ``F.interpolate`` — its scripted body mentions every resampling kernel torch has (``_upsample_lanczos2d_aa``
  is from torch 2.x), although only bilinear runs: the network's ×2 upsampling calls the bilinear kernel
  (``aten::upsample_bilinear2d`` with an explicit output size, in torch since 1.6) directly;
* Optional attributes on the exported module (Nuke turns attributes into knobs).

:func:`export_torchscript` checks every operator of the scripted graph against the list in
:mod:`copycat_nuke.torchscript_ops` (held to torch 1.12.1's own operator names by the tests) and the
archive's file-format version against what torch 1.12 reads, and refuses the export otherwise. The transfer's
``copysign`` and the sanitiser's ``nan_to_num`` appeared in torch 1.8, so the files need torch ≥ 1.8:
Nuke 14 and later, not Nuke 13. Files exported with torch 2.13 were loaded and run in a real torch 1.12.1
(Python 3.10, by hand: the project's Python 3.11 has no torch 1.12); Nuke itself was not tried.

**ONNX** uses torch's TorchScript-based exporter (``dynamo=False``: the newer exporter needs
``onnxscript``, which this project does not depend on) at opset :data:`DEFAULT_OPSET` with dynamic height
and width. Opset 13 is read by onnxruntime ≥ 1.6 and current TensorRT/OpenVINO; 11, the lowest that works
(dynamic ``Resize`` sizes), is there for older runtimes. ``copysign`` and ``expm1`` have no ONNX symbolic
in torch; they are lowered here to ``Where(x < 0, -|m|, |m|)`` and ``Exp(x) - 1`` (agreeing with torch
to ~1e-6 relative).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import nn

from copycat_nuke import atomic, catfile, torchscript_ops
from copycat_nuke.errors import CatFileError, ConfigError
from copycat_nuke.models import MSRN
from copycat_nuke.transfer import Transfer, TransferModule, nan_to_num_torch

#: ONNX opset written by default (see the module docstring for why 13; 11 is the lowest that works).
DEFAULT_OPSET = 13
MIN_OPSET = 11

#: Every operator the exported TorchScript code may call, unqualified (``conv2d``): the names of
#: :data:`copycat_nuke.torchscript_ops.ALLOWED_OPERATORS`, the list checked against torch 1.12 (Nuke 14/15).
TORCH_1_12_OPERATORS = frozenset(name.split("::", 1)[1] for name in torchscript_ops.ALLOWED_OPERATORS)


class ExportMSRN(MSRN):
    """An :class:`MSRN` whose ``forward`` keeps to operators old TorchScript runtimes know.

    Same weights, same maths as :meth:`MSRN.forward_levels` (finest level only), but the ×2 upsampling
    calls the bilinear kernel directly instead of ``F.interpolate``, and the input must already be padded
    to :attr:`multiple`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pyramid = [x]
        for _ in range(self.levels - 1):
            pyramid.append(F.avg_pool2d(pyramid[-1], 2))
        pyramid.reverse()
        coarsest = pyramid[0]
        previous = self.first_prediction(coarsest)
        hidden = coarsest.new_zeros([0])
        cell = hidden
        if self.use_lstm:
            size = [coarsest.shape[0], self.bottleneck_channels, coarsest.shape[2] // 4, coarsest.shape[3] // 4]
            hidden = coarsest.new_zeros(size)
            cell = hidden
        for i, level_input in enumerate(pyramid):
            if i > 0:
                previous = _upsample2x(previous)
                if self.use_lstm:
                    hidden = _upsample2x(hidden)
                    cell = _upsample2x(cell)
            previous, hidden, cell = self._level(level_input, previous, hidden, cell)
        return previous

    def upscale_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return x
        return _upsample2x(x)  # the only upscaler is ×2 (×4 is ×2 twice)


def _upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear ×2 (align_corners False): what ``F.interpolate(scale_factor=2.0)`` computes, bit for bit."""
    # The three-argument form resolves to the aten overload with an explicit size (torch's stub lists only
    # the newer ``.vec`` overload, hence the ignore).
    return torch._C._nn.upsample_bilinear2d(x, [x.shape[2] * 2, x.shape[3] * 2], False)  # type: ignore[call-arg]


def _pad_reflect(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad N×C×H×W at the bottom and right to multiples of ``multiple`` (``F.pad`` without aten::pad).

    Always concatenates (an empty slice where no padding is needed), so a traced ONNX graph stays dynamic.
    """
    height = x.shape[2]
    width = x.shape[3]
    if height < multiple or width < multiple:
        raise RuntimeError("copycat: frames must be at least " + str(multiple) + " pixels high and wide")
    pad_h = (multiple - height % multiple) % multiple
    pad_w = (multiple - width % multiple) % multiple
    x = torch.cat([x, torch.flip(x[:, :, height - 1 - pad_h : height - 1], [2])], 2)
    return torch.cat([x, torch.flip(x[:, :, :, width - 1 - pad_w : width - 1], [3])], 3)


class ExportModule(nn.Module):
    """Scene-linear 1×C_in×H×W → scene-linear 1×C_out×(H·scale)×(W·scale): a ``.cat`` as one module.

    Attributes are plain ``int`` s and submodules (no Optional): ``multiple`` (16), ``scale``.
    """

    def __init__(self, network: ExportMSRN, working: Transfer, scale: int = 1) -> None:
        super().__init__()
        self.network = network
        self.to_working = TransferModule(working)
        self.from_working = TransferModule(working, inverse=True)
        self.multiple: int = network.multiple
        self.scale: int = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = x.shape[2]
        width = x.shape[3]
        x = self.to_working(nan_to_num_torch(x))
        padded = _pad_reflect(x, self.multiple)
        y = self.network(padded)[:, :, : height * self.scale, : width * self.scale]
        if self.scale > 1 and self.network.residual:  # as MSRN.forward: the unpadded frame's own base
            base = self.network.upscale_input(padded)[:, :, : height * self.scale, : width * self.scale]
            y = y - base + self.network.upscale_input(x)
        return self.from_working(y)


def export_module(model: Union[str, Path, catfile.CatFile]) -> ExportModule:
    """The :class:`ExportModule` of a ``.cat`` (a path or a loaded file), in eval mode on the CPU.

    Raises:
        CatFileError: the file cannot be read, its architecture cannot be exported (or it is temporal), or
            its network does not produce the manifest's scale.
    """
    cat = model if isinstance(model, catfile.CatFile) else catfile.load_cat(model)
    manifest = cat.manifest
    name = cat.path or "the model"
    if manifest.architecture != "msrn":
        raise CatFileError(f"{name}: exporting the {manifest.architecture!r} architecture is not supported (only msrn)")
    temporal = int(manifest.arguments.get("temporal", 0))
    if temporal:
        raise CatFileError(
            f"{name} is a temporal network (it sees {temporal} neighbouring frame(s) on each side), and Nuke's "
            "Inference node gives a network one frame: run it with 'copycat infer' or the copycat_nuke "
            "Inference node instead"
        )
    network = ExportMSRN(**manifest.arguments)
    network.load_state_dict(cat.weights, strict=True)
    module = ExportModule(network.eval(), Transfer.from_dict(manifest.transfer), manifest.scale).eval()
    side = module.multiple
    with torch.no_grad():
        shape = tuple(module(torch.zeros(1, len(manifest.channels_in), side, side)).shape)
    if shape != (1, len(manifest.channels_out), side * manifest.scale, side * manifest.scale):
        raise CatFileError(
            f"{name}: the manifest says scale {manifest.scale}, but the network keeps a {side}×{side} frame at "
            f"{shape[3]}×{shape[2]}; this version cannot export it"
        )
    return module


def nuke_channel_names(names: list[str]) -> list[str]:
    """Channel names as Nuke spells them: ``R, G, B, A`` → ``rgba.red, rgba.green, rgba.blue, rgba.alpha``.

    Names of other layers (``mask.A``, ``depth.Z``) are kept as they are.
    """
    main = {"r": "rgba.red", "g": "rgba.green", "b": "rgba.blue", "a": "rgba.alpha"}
    out = []
    for name in names:
        layer, _, channel = name.rpartition(".")
        key = channel.lower() if layer.lower() in ("", "rgba", "rgb") else ""
        out.append(main.get(key, name))
    return out


def catfilecreator_settings(manifest: catfile.Manifest) -> dict[str, str]:
    """The CatFileCreator knob values for a model: ``channelsIn``, ``channelsOut``, ``outputScale``."""
    return {
        "channelsIn": ", ".join(nuke_channel_names(manifest.channels_in)),
        "channelsOut": ", ".join(nuke_channel_names(manifest.channels_out)),
        "outputScale": str(manifest.scale),
    }


def _description(manifest: catfile.Manifest) -> dict[str, Any]:
    return {
        "channels_in": manifest.channels_in,
        "channels_out": manifest.channels_out,
        "scale": manifest.scale,
        "transfer": manifest.transfer,
        "architecture": manifest.architecture,
        "arguments": manifest.arguments,
        "catfilecreator": catfilecreator_settings(manifest),
        "input": "scene-linear float, 1×C_in×H×W, H and W at least 16",
    }


def check_output(
    output: Union[str, Path], source: Union[str, Path, None], *, overwrite: bool = True, option: str = "output"
) -> Path:
    """Refuse an export target that would destroy something: the model being exported (however it is
    spelled: a symlink, a relative path, a hard link), any ``.cat``, or (``overwrite`` False) any existing
    file. Returns the target as a path.

    Raises:
        ConfigError: naming ``option``, the file and what to do.
    """
    target = Path(output)
    if target.is_dir():
        raise ConfigError(f"{option} {target} is a directory: give a file name, e.g. {target / 'model.pt'}")
    if not target.exists():
        return target
    if source is not None and _same_file(target, Path(source)):
        raise ConfigError(
            f"{option} {target} is the model being exported: writing it would destroy the model. "
            "Give another file name (e.g. model.pt for TorchScript, model.onnx for ONNX)."
        )
    if target.suffix.lower() == ".cat" or _is_cat(target):
        raise ConfigError(f"{option} {target} is a .cat model: export never overwrites one; give another file name")
    if not overwrite:
        raise ConfigError(f"{option} {target} already exists: give another file name, or --force to replace it")
    return target


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _is_cat(path: Path) -> bool:
    """Whether ``path`` is a copycat_nuke ``.cat`` whatever its name (a zip holding a manifest)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return catfile.MANIFEST in archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return False


@contextlib.contextmanager
def _atomic_target(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` that is renamed over it if the block succeeds, removed if not."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create the directory {target.parent}: {error.strerror or error}") from error
    with atomic.atomic_path(target) as temporary:
        yield temporary


def export_torchscript(
    model: Union[str, Path, catfile.CatFile], output: Union[str, Path], *, overwrite: bool = True
) -> Path:
    """Write a ``.cat`` as a scripted TorchScript ``.pt`` for Nuke's CatFileCreator; return its path.

    The file also carries ``copycat.json`` (an extra file: channels, scale, transfer, the CatFileCreator
    knob values). Written atomically. Never over the model itself or any ``.cat``; over another existing
    file only with ``overwrite`` (:func:`check_output`).
    """
    check_output(output, _source(model), overwrite=overwrite, option="the TorchScript output")
    cat = model if isinstance(model, catfile.CatFile) else catfile.load_cat(model)
    name = str(cat.path or "the model")
    scripted = torch.jit.script(export_module(cat))
    torchscript_ops.check_operators(scripted, name)  # nothing Nuke's torch 1.12 would not know
    extra = {"copycat.json": json.dumps(_description(cat.manifest), indent=2)}
    buffer = io.BytesIO()  # saved to memory first: the archive's inner folder is named after the file
    torch.jit.save(scripted, buffer, _extra_files=extra)
    torchscript_ops.check_file_format(buffer.getvalue(), name)
    target = check_output(output, _source(model), overwrite=overwrite, option="the TorchScript output")
    with _atomic_target(target) as temporary:
        temporary.write_bytes(buffer.getvalue())
    return target


def _source(model: Union[str, Path, catfile.CatFile]) -> Union[str, Path, None]:
    return model.path if isinstance(model, catfile.CatFile) else model


def _copysign_symbolic(g: Any, magnitude: Any, sign: Any) -> Any:
    size = g.op("Abs", magnitude)
    negative = g.op("Less", sign, g.op("Constant", value_t=torch.tensor(0.0)))
    return g.op("Where", negative, g.op("Neg", size), size)


def _expm1_symbolic(g: Any, x: Any) -> Any:
    return g.op("Sub", g.op("Exp", x), g.op("Constant", value_t=torch.tensor(1.0)))


def export_onnx(
    model: Union[str, Path, catfile.CatFile],
    output: Union[str, Path],
    *,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = True,
) -> Path:
    """Write a ``.cat`` as ONNX with dynamic height and width (input ``input``, output ``output``); return its path.

    Float32 in and out. The model's channels, scale and transfer are stored as ONNX metadata
    (``copycat.json``). Needs the ``onnx`` package (``pip install copycat-nuke[export]``). Written atomically;
    never over the model itself or any ``.cat``, over another existing file only with ``overwrite``.
    """
    check_output(output, _source(model), overwrite=overwrite, option="the ONNX output")
    try:
        import onnx
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install 'copycat-nuke[export]'") from None
    if not MIN_OPSET <= opset <= 20:
        raise ConfigError(f"ONNX opset {opset} is not supported: use {MIN_OPSET}..20 (default {DEFAULT_OPSET})")
    cat = model if isinstance(model, catfile.CatFile) else catfile.load_cat(model)
    module = export_module(cat)
    example = torch.rand(1, len(cat.manifest.channels_in), 48, 48)
    target = check_output(output, _source(model), overwrite=overwrite, option="the ONNX output")
    symbolics: dict[str, Callable[..., Any]] = {"aten::copysign": _copysign_symbolic, "aten::expm1": _expm1_symbolic}
    for name, function in symbolics.items():
        torch.onnx.register_custom_op_symbolic(name, function, 9)
    try:
        with _atomic_target(target) as temporary, warnings.catch_warnings():
            # Tracing bakes the size check in _pad_reflect into the graph; that is intended.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                module,
                (example,),
                str(temporary),
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {2: "height", 3: "width"}, "output": {2: "out_height", 3: "out_width"}},
            )
            graph = onnx.load(str(temporary))
            entry = graph.metadata_props.add()
            entry.key, entry.value = "copycat.json", json.dumps(_description(cat.manifest))
            onnx.checker.check_model(graph)
            onnx.save(graph, str(temporary))
    finally:
        for name in symbolics:
            torch.onnx.unregister_custom_op_symbolic(name, 9)
    return target


__all__ = [
    "DEFAULT_OPSET",
    "TORCH_1_12_OPERATORS",
    "ExportMSRN",
    "ExportModule",
    "catfilecreator_settings",
    "check_output",
    "export_module",
    "export_onnx",
    "export_torchscript",
    "nuke_channel_names",
]
