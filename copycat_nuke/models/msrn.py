"""The Multi-Scale Recurrent Network (MSRN) that CopyCat trains.

A coarse-to-fine, scale-recurrent encoder-decoder after Tao et al., "Scale-recurrent Network for Deep
Image Deblurring" (CVPR 2018): the same weights run at every level of an image pyramid (scale 0.5 per
level), and each level sees its input at that scale concatenated with the upsampled prediction of the
coarser level. One level is a three-stage U-Net:

    encoder  5×5 conv + 3 ResBlocks at width w, 2w (stride 2), 4w (stride 2)
    decoder  3 ResBlocks + 4×4 transposed conv (stride 2) per stage, additive skips, 5×5 output conv

That is 42 conv layers; at w = 32 (Medium) it has 6.88 M weights for RGB→RGB.

Upscaling (``scale`` = 2, the Upscale node): every level still works at its input's resolution, and its
output conv predicts ``scale²`` sub-pixels per pixel that a pixel shuffle (depth-to-space) puts in place
(ESPCN, Shi et al. 2016), added to a bilinear upscale of the input. The coarser level's prediction comes
back to the finer level's input grid by the inverse shuffle (space-to-depth), so nothing runs at output
resolution. ×4 is ×2 twice (:mod:`copycat_nuke.upscale`).

Where input and output channels match, the network predicts a residual and its output conv starts at
zero, so an untrained network is exactly the identity. Any frame size works: the input is padded to a
multiple of 16 (``2**(levels-1) * 4``) inside :meth:`MSRN.forward` and the result cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    """conv-ReLU-conv with an identity shortcut; keeps N×C×H×W."""

    def __init__(self, channels: int, kernel_size: int = 5) -> None:
        super().__init__()
        padding = kernel_size // 2
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class NoLSTM(nn.Module):
    """Stands in for :class:`ConvLSTMCell` when the bottleneck carries no state (same signature)."""

    def forward(self, x: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, cell


def _res_blocks(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(channels) for _ in range(count)])


class ConvLSTMCell(nn.Module):
    """A 3×3 convolutional LSTM cell for the bottleneck; state is (hidden, cell), both N×C×h×w."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gates = nn.Conv2d(2 * channels, 4 * channels, 3, padding=1)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i, f, o, g = torch.chunk(self.gates(torch.cat([x, hidden], dim=1)), 4, dim=1)
        cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
        hidden = torch.sigmoid(o) * torch.tanh(cell)
        return hidden, cell


class MSRN(nn.Module):
    """Multi-Scale Recurrent Network.

    Args:
        in_channels: channels of the Input image (3 for rgb, 4 for rgba...).
        out_channels: channels of the prediction (3 for rgb, 1 for a matte...).
        width: base width w; stages are w, 2w, 4w. Small 16, Medium 32, Large 48.
        levels: pyramid levels, coarse to fine at scale 0.5 each (3 as in SRN).
        blocks: ResBlocks per encoder/decoder stage (3 as in SRN, giving 42 conv layers).
        lstm: carry a ConvLSTM at the bottleneck whose state flows from coarse to fine levels.
        scale: output size / input size (1, or 2 for an upscaler; see the module docstring).
        temporal: neighbouring frames seen on each side (0: one frame). The input then stacks
            ``1 + 2·temporal`` frames of ``in_channels`` each along the channels, the frame itself first
            (:func:`copycat_nuke.data.stack_frames`); a residual network adds its prediction to that frame.

    ``forward`` maps N×C_in·(1+2·temporal)×H×W to N×C_out×(H·scale)×(W·scale) for any H×W, in the working
    space of ``transfer.py``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        width: int = 32,
        levels: int = 3,
        blocks: int = 3,
        lstm: bool = False,
        scale: int = 1,
        temporal: int = 0,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.temporal = temporal
        self.input_channels = in_channels * (1 + 2 * temporal)
        self.out_channels = out_channels
        self.scale = scale
        self.levels = levels
        self.residual = in_channels == out_channels
        self.use_lstm = lstm
        w = width
        self.bottleneck_channels = 4 * w
        self.enc1 = nn.Sequential(
            nn.Conv2d(self.input_channels + out_channels * scale * scale, w, 5, padding=2), _res_blocks(w, blocks)
        )
        self.enc2 = nn.Sequential(nn.Conv2d(w, 2 * w, 5, stride=2, padding=2), _res_blocks(2 * w, blocks))
        self.enc3 = nn.Sequential(nn.Conv2d(2 * w, 4 * w, 5, stride=2, padding=2), _res_blocks(4 * w, blocks))
        self.lstm: nn.Module = ConvLSTMCell(4 * w) if lstm else NoLSTM()
        self.dec3 = nn.Sequential(_res_blocks(4 * w, blocks), nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, padding=1))
        self.dec2 = nn.Sequential(_res_blocks(2 * w, blocks), nn.ConvTranspose2d(2 * w, w, 4, 2, padding=1))
        self.dec1 = _res_blocks(w, blocks)
        self.out = nn.Conv2d(w, out_channels * scale * scale, 5, padding=2)
        if self.residual:
            # An untrained residual network is exactly the identity: training starts from "no change".
            nn.init.zeros_(self.out.weight)
            if self.out.bias is not None:
                nn.init.zeros_(self.out.bias)

    @property
    def multiple(self) -> int:
        """Frame sizes the levels and downsamplings divide exactly; other sizes are padded to it."""
        return (1 << (self.levels - 1)) * 4

    def _level(
        self, x: torch.Tensor, previous: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.scale > 1:  # the coarser prediction, at output resolution, back onto the input's grid
            previous = F.pixel_unshuffle(previous, self.scale)
        e1 = self.enc1(torch.cat([x, previous], dim=1))
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        hidden, cell = self.lstm(e3, hidden, cell)
        e3 = hidden
        d2 = self.dec3(e3) + e2
        d1 = self.dec2(d2) + e1
        y = self.out(self.dec1(d1))
        if self.scale > 1:
            y = F.pixel_shuffle(y, self.scale)
        if self.residual:
            y = y + self.upscale_input(x)
        return y, hidden, cell

    def upscale_input(self, x: torch.Tensor) -> torch.Tensor:
        """The base a residual network adds its prediction to: ``x`` (its own frame, without a temporal
        network's neighbours) bilinearly upscaled ×``scale``."""
        if self.temporal:
            x = x[:, : self.in_channels]
        if self.scale == 1:
            return x
        return F.interpolate(x, scale_factor=float(self.scale), mode="bilinear", align_corners=False)

    def first_prediction(self, coarsest: torch.Tensor) -> torch.Tensor:
        """What the coarsest level sees as the "previous" prediction: the input itself (upscaled) for a
        residual network, zeros otherwise."""
        if self.residual:
            return self.upscale_input(coarsest)
        n, _, h, w = coarsest.shape
        return coarsest.new_zeros((n, self.out_channels, h * self.scale, w * self.scale))

    def forward_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Predictions at every level, coarse to fine, for the multi-scale loss.

        ``x`` is N×C_in×H×W with H and W multiples of :attr:`multiple`; level ``i`` (0 = coarsest) is
        N×C_out×(s·H/2**(levels-1-i))×(s·W/2**(levels-1-i)) for scale s.
        """
        pyramid = [x]
        for _ in range(self.levels - 1):
            pyramid.append(F.avg_pool2d(pyramid[-1], 2))
        pyramid.reverse()
        coarsest = pyramid[0]
        previous = self.first_prediction(coarsest)
        hidden = cell = coarsest.new_zeros(0)
        if self.use_lstm:
            bottleneck = self.bottleneck_channels
            hidden = coarsest.new_zeros((coarsest.shape[0], bottleneck, coarsest.shape[2] // 4, coarsest.shape[3] // 4))
            cell = hidden
        outputs: list[torch.Tensor] = []
        for i, level_input in enumerate(pyramid):
            if i > 0:
                previous = F.interpolate(previous, scale_factor=2.0, mode="bilinear", align_corners=False)
                if self.use_lstm:
                    hidden = F.interpolate(hidden, scale_factor=2.0, mode="bilinear", align_corners=False)
                    cell = F.interpolate(cell, scale_factor=2.0, mode="bilinear", align_corners=False)
            previous, hidden, cell = self._level(level_input, previous, hidden, cell)
            outputs.append(previous)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×C_in×H×W → N×C_out×(H·scale)×(W·scale) for any H×W (reflect-padded to :attr:`multiple` inside)."""
        height, width = x.shape[2], x.shape[3]
        padded = pad_to_multiple(x, self.multiple)
        y = self.forward_levels(padded)[-1][:, :, : height * self.scale, : width * self.scale]
        if self.scale > 1 and self.residual and padded.shape != x.shape:
            # The base was upscaled from the padded frame, which reaches past the last row and column:
            # swap in the frame's own (edge-clamped) base, so an untrained upscaler is exactly bilinear.
            base = self.upscale_input(padded)[:, :, : height * self.scale, : width * self.scale]
            y = y - base + self.upscale_input(x)
        return y


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad N×C×H×W on the bottom and right to multiples of ``multiple``.

    Reflection where the frame is large enough (no hard edge for the convolutions to learn), edge
    replication otherwise.
    """
    height, width = x.shape[2], x.shape[3]
    pad_h = (multiple - height % multiple) % multiple
    pad_w = (multiple - width % multiple) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, [0, pad_w, 0, pad_h], mode=mode)
