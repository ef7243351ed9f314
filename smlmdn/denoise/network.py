"""The four-rotation blind-spot U-Net of Laine et al. (2019), with optional temporal context.

One shared U-Net whose receptive field only looks *up*: every 3x3 convolution sees its own row and
the two rows above (zero rows padded on top); before each 2x2 max-pool the features are shifted down
one row; at the end they are shifted down one more row, so an output pixel sees only rows strictly
above it. The input is run at rotations 0/90/180/270 degrees (stacked on the batch axis), the four
results are rotated back and concatenated, so together they see every pixel except the centre one,
and 1x1 convolutions mix them into the two prior parameters per pixel.

Temporal context (``context = K > 0``), two designs (``context_mode``):

* ``"stem"`` (default): the ``2K`` neighbouring frames are extra input channels of the U-Net's first
  layer through a *non-blind* path. In every rotation the first layer is
  ``ShiftConv(centre) + up1(Conv3x3(neighbours))``: the centre frame enters through the upward-only
  shifted conv, the neighbours through an ordinary centred 3x3 conv whose output is moved *up* one
  row, so the rotation-``r`` branch sees the neighbours down to one row *below* the pixel (and the
  pixel itself), while it sees the centre frame only strictly above. The neighbours do not contain the
  centre frame, so nothing leaks; the whole U-Net (all levels) mixes the neighbours' value at the pixel
  with the centre frame's surroundings.
* ``"branch"`` (the design before 0.x; kept for comparison and old model files): frames ``t-K..t+K``
  all go through the blind U-Net (so neighbours are blind at the pixel there too), and the ``2K``
  neighbours also go through a small ordinary 3x3 CNN (two layers) whose features join the 1x1 head.

Either way only the centre frame's centre pixel is hidden (tested by gradients).

Tiling support: ``forward(x, mask)`` takes an optional validity mask (1 inside the image, 0 outside)
and zeroes features outside it after every layer. Computing a tile of a zero-extended canvas with
this mask is then exactly the computation of the whole image with ordinary zero padding, which is
what makes tiled output equal whole-frame output (see :mod:`smlmdn.denoise.apply`).

Inputs are normalised counts ``(z - level) / scale`` (N, 2K+1, H, W) with H = W a multiple of
``2 ** depth``; outputs are raw (unbounded) head activations (N, 2, H, W), turned into bounded
prior parameters by :meth:`BlindSpotNet.params`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

LEAK = 0.1


@dataclass(frozen=True)
class NetConfig:
    """Architecture: ``width`` channels per level, ``depth`` down-samplings, ``context`` frames each side."""

    width: int = 16
    depth: int = 3
    context: int = 0
    head: str = "gamma-poisson"
    context_mode: str = "stem"  # "stem" (neighbours into the U-Net's first layer, non-blind) or "branch"
    # False: the same U-Net with centred convolutions and no shifts, all 2K+1 frames as input channels.
    # It sees the pixel, so it can only be trained on clean targets: the benchmark's supervised bound.
    blind: bool = True
    # Bounds on the prior parameters (model counts). a spans many decades, so it is log-parameterised.
    m_floor: float = 1e-3
    m_ceiling: float = 1e6
    a_min: float = 1e-2
    a_max: float = 1e5

    def to_dict(self) -> dict:
        """Return the configuration as a plain dict (field name -> value)."""
        return asdict(self)

    @property
    def multiple(self) -> int:
        """Tile and canvas sizes must be multiples of this (``2 ** depth``)."""
        return 2**self.depth

    @property
    def in_frames(self) -> int:
        """Return the number of input frames: the centre frame and ``context`` on each side."""
        return 2 * self.context + 1


def _shift_down(x: torch.Tensor, n: int = 1) -> torch.Tensor:
    """Move features ``n`` rows down (zero rows enter on top, the bottom rows drop out)."""
    return F.pad(x, (0, 0, n, 0))[:, :, : x.shape[2], :]


def _shift_up(x: torch.Tensor, n: int = 1) -> torch.Tensor:
    """Move features ``n`` rows up (zero rows enter at the bottom, the top rows drop out)."""
    return F.pad(x, (0, 0, 0, n))[:, :, n:, :]


CONTEXT_MODES = ("stem", "branch")


class ShiftConv(nn.Module):
    """3x3 convolution whose output row i sees input rows i-2..i (its own row and above).

    ``blind=False``: an ordinary centred 3x3 convolution (rows i-1..i+1), for the non-blind bound.
    """

    def __init__(self, cin: int, cout: int, blind: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=0)
        self.pad = (1, 1, 2, 0) if blind else (1, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the 3x3 convolution to ``x`` padded by ``pad`` (two rows on top and none below when ``blind``)."""
        return self.conv(F.pad(x, self.pad))


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LEAK)


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask


class UpOnlyUNet(nn.Module):
    """U-Net with an upward-only receptive field; output row i depends on input rows < i only."""

    def __init__(self, cin: int, width: int, depth: int, side_in: int = 0, blind: bool = True) -> None:
        super().__init__()
        self.depth = depth
        self.blind = blind
        c = width
        self.enc0 = nn.ModuleList([ShiftConv(cin, c, blind), ShiftConv(c, c, blind)])
        # non-blind side input (temporal neighbours) added to the first layer, one row of look-ahead
        self.side = nn.Conv2d(side_in, c, 3, padding=1, bias=False) if side_in else None
        self.enc = nn.ModuleList([ShiftConv(c, c, blind) for _ in range(depth)])
        self.dec = nn.ModuleList(
            [nn.ModuleList([ShiftConv(2 * c, c, blind), ShiftConv(c, c, blind)]) for _ in range(depth)]
        )
        self.out_channels = c

    def forward(
        self, x: torch.Tensor, masks: list[torch.Tensor] | None = None, side: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x``: blind input; ``side``: non-blind input (may see the pixel), required iff built with ``side_in``."""
        mk = (lambda lvl: masks[lvl]) if masks is not None else (lambda lvl: None)
        h = _masked(x, mk(0))
        for i, conv in enumerate(self.enc0):
            pre = conv(h)
            if i == 0 and self.side is not None:
                if side is None:
                    raise ValueError("this network was built with side_in: pass side")
                pre = pre + _shift_up(_masked(self.side(_masked(side, mk(0))), mk(0)))
            h = _masked(_act(pre), mk(0))
        skips = [h]
        for lvl in range(1, self.depth + 1):
            # Shift down before pooling so a pooled row only holds rows at or above the finer rows it becomes.
            h = F.max_pool2d(_shift_down(h) if self.blind else h, 2)
            h = _masked(_act(self.enc[lvl - 1](h)), mk(lvl))
            skips.append(h)
        for lvl in range(self.depth - 1, -1, -1):
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = torch.cat([h, skips[lvl]], dim=1)
            for conv in cast(nn.ModuleList, self.dec[lvl]):
                h = _masked(_act(conv(h)), mk(lvl))
        # Final one-row shift: exclude the pixel's own row (and so the pixel itself).
        return _shift_down(h) if self.blind else h


class BlindSpotNet(nn.Module):
    """Four-rotation blind-spot network; see the module docstring."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        c = config.width
        if config.context_mode not in CONTEXT_MODES:
            raise ValueError(f"context_mode must be one of {CONTEXT_MODES}, got {config.context_mode!r}")
        self.stem = config.blind and config.context > 0 and config.context_mode == "stem"
        if self.stem:
            self.unet = UpOnlyUNet(1, c, config.depth, side_in=2 * config.context)
        else:
            self.unet = UpOnlyUNet(config.in_frames, c, config.depth, blind=config.blind)
        head_in = 4 * self.unet.out_channels
        self.ctx = None
        if config.blind and config.context > 0 and not self.stem:
            self.ctx = nn.ModuleList([nn.Conv2d(2 * config.context, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)])
            head_in += c
        self.head = nn.ModuleList([nn.Conv2d(head_in, 2 * c, 1), nn.Conv2d(2 * c, c, 1), nn.Conv2d(c, 2, 1)])

    @staticmethod
    def _mask_pyramid(mask: torch.Tensor | None, depth: int) -> list[torch.Tensor] | None:
        if mask is None:
            return None
        return [mask[:, :, :: 2**lvl, :: 2**lvl] for lvl in range(depth + 1)]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Raw head activations (N, 2, H, W) for normalised input (N, 2K+1, H, W), H == W."""
        n, _, hgt, wid = x.shape
        if hgt != wid or hgt % self.config.multiple:
            raise ValueError(f"input must be square with side a multiple of {self.config.multiple}, got {hgt}x{wid}")
        ctx = self.config.context
        blind, side = (x[:, ctx : ctx + 1], torch.cat([x[:, :ctx], x[:, ctx + 1 :]], dim=1)) if self.stem else (x, None)
        rots = torch.cat([torch.rot90(blind, k, dims=(2, 3)) for k in range(4)], dim=0)
        srots = torch.cat([torch.rot90(side, k, dims=(2, 3)) for k in range(4)], dim=0) if side is not None else None
        masks = None
        if mask is not None:
            rmask = torch.cat([torch.rot90(mask, k, dims=(2, 3)) for k in range(4)], dim=0)
            masks = self._mask_pyramid(rmask, self.config.depth)
        feats = self.unet(rots, masks, srots)
        parts = [torch.rot90(f, -k, dims=(2, 3)) for k, f in enumerate(torch.split(feats, n, dim=0))]
        if self.ctx is not None:
            k = self.config.context
            neighbours = torch.cat([x[:, :k], x[:, k + 1 :]], dim=1)
            h = _masked(neighbours, mask)
            for conv in self.ctx:
                h = _masked(_act(conv(h)), mask)
            parts.append(h)
        h = torch.cat(parts, dim=1)
        for i, conv in enumerate(self.head):
            h = conv(h)
            if i < len(self.head) - 1:
                h = _act(h)
        return h

    def params(self, raw: torch.Tensor, level: float, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Bounded prior parameters in model counts from raw outputs (N, 2, H, W).

        gamma-poisson: ``m = level * softplus(r0) + ...`` (mean, clamped to [m_floor, m_ceiling]) and
        shape ``a = exp(log a_min + (log a_max - log a_min) * sigmoid(r1))``, smooth and bounded.
        gaussian: ``mu`` as ``m``; ``s = scale * softplus(r1) + floor`` (prior std).
        """
        cfg = self.config
        r0, r1 = raw[:, 0].float(), raw[:, 1].float()
        unit = max(float(level), float(scale), 1e-3)
        m = torch.clamp(unit * F.softplus(r0), min=cfg.m_floor, max=cfg.m_ceiling)
        if cfg.head == "gamma-poisson":
            lo, hi = math.log(cfg.a_min), math.log(cfg.a_max)
            a = torch.exp(lo + (hi - lo) * torch.sigmoid(r1))
            return m, a
        s = float(scale) * F.softplus(r1) + 1e-3
        return m, s


def receptive_halo(config: NetConfig) -> int:
    """Return a bound on how far (pixels) an output pixel's receptive field reaches, rounded up to ``2 ** depth``.

    Sums every layer's reach at its scale ``s``: a shifted 3x3 conv reaches 2 s rows up and s
    sideways, the shift-before-pool s, the pool s, the nearest upsampling s, the final shift 1,
    and the context CNN (branch) or the neighbours' stem conv + look-ahead row (stem) 2. After the four rotations the reach is the same in every direction.
    A test checks that the gradient outside this bound is zero.
    """
    d = config.depth
    reach = 2 * 2 * 1  # enc0: two convs at scale 1
    for lvl in range(1, d + 1):
        s = 2**lvl
        reach += (s // 2) * 2  # shift + pool at the finer scale
        reach += 2 * s  # one conv
    for lvl in range(d):
        s = 2**lvl
        reach += 2 * (2 * s) + s  # two convs + upsampling from the coarser scale
    reach += 1 + (2 if config.context else 0)
    mult = config.multiple
    return int(math.ceil(reach / mult) * mult)
