"""The denoiser as one torch module: raw detected photons in, posterior estimate out (for export).

:class:`PosteriorModule` wraps :class:`~smlmdn.denoise.network.BlindSpotNet` with every step that
``smlmdn denoise`` performs around it, so a consumer that knows nothing of smlmdn (e.g. a BioImage
Model Zoo runner) gets the same numbers:

1. photons ``y`` -> model counts ``z = max(y + shift, 0) / factor`` (camera noise transform);
2. temporal context ``K``: frames ``t-K..t+K`` per frame, mirrored at the ends without the edge frame;
3. normalisation ``(z - level) / scale``, a zero canvas (side a multiple of ``2 ** depth``) with a
   validity mask, the blind-spot network, bounded prior parameters;
4. the posterior with the centre pixel's own count: Gamma-Poisson mean ``(a + z) / (a / m + 1)``
   (or Laine's Gaussian mean), in float64;
5. back to photons ``F * mean - shift``.

This file imports only torch and :mod:`.network`; the export concatenates both into the package's
architecture source, so the package runs without smlmdn installed.
"""

from __future__ import annotations

import torch
from torch import nn

from .network import BlindSpotNet, NetConfig

FRAMES_PER_CALL = 8


class PosteriorModule(nn.Module):
    """(B, T, Y, X) detected photons (float32) -> (B, T, Y, X) posterior ``estimate`` in detected photons.

    ``net``: a :class:`NetConfig` as a dict; ``transform``: ``shift``, ``factor`` (model counts);
    ``norm``: ``level``, ``scale``; ``estimate``: ``mean`` (default), ``map``, ``std`` or ``prior``.
    Needs ``T >= K + 1`` frames (K = the model's temporal context). Weights: the network's state dict
    with keys prefixed ``net.``.
    """

    def __init__(self, net: dict, transform: dict, norm: dict, estimate: str = "mean") -> None:
        super().__init__()
        self.config = NetConfig(**net)
        self.net = BlindSpotNet(self.config)
        self.shift, self.factor = float(transform["shift"]), float(transform["factor"])
        self.level, self.scale = float(norm["level"]), float(norm["scale"])
        if estimate not in ("mean", "map", "std", "prior"):
            raise ValueError(f"estimate must be mean, map, std or prior, got {estimate!r}")
        self.estimate = estimate

    def _posterior(self, z: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor) -> torch.Tensor:
        z, p0, p1 = z.double(), p0.double(), p1.double()
        if self.estimate == "prior":
            return p0
        if self.config.head == "gamma-poisson":  # prior Gamma(a, a / m): posterior Gamma(a + z, a / m + 1)
            m, a = p0, p1
            rate = a / m + 1.0
            if self.estimate == "mean":
                return (a + z) / rate
            if self.estimate == "map":
                return torch.clamp(a + z - 1.0, min=0.0) / rate
            return torch.sqrt(a + z) / rate
        mu, s2 = p0, p1**2  # Laine's Gaussian approximation, noise variance v = max(mu, 1e-2)
        v = torch.clamp(mu, min=1e-2)
        if self.estimate == "std":
            return torch.sqrt(s2 * v / (s2 + v))
        return (z * s2 + mu * v) / (s2 + v)

    def forward(self, photons: torch.Tensor) -> torch.Tensor:
        """Posterior estimate (B, T, Y, X) float32 photons of ``photons`` (B, T, Y, X)."""
        b, t, hgt, wid = photons.shape
        k = self.config.context
        if t < k + 1:
            raise ValueError(
                f"the model uses {k} context frames on each side and needs at least {k + 1} frames, got {t}"
            )
        z = torch.clamp(photons.float() + self.shift, min=0.0) / self.factor
        index = [(-i if i < 0 else 2 * (t - 1) - i if i >= t else i) for i in range(-k, t + k)]
        zp = z[:, index]  # (B, T + 2K, Y, X), mirrored without the edge frame
        mult = self.config.multiple
        side = -(-max(hgt, wid) // mult) * mult
        mask = torch.zeros((1, 1, side, side), dtype=torch.float32, device=photons.device)
        mask[:, :, :hgt, :wid] = 1
        out = torch.empty((b, t, hgt, wid), dtype=torch.float32, device=photons.device)
        for i in range(b):
            for f0 in range(0, t, FRAMES_PER_CALL):
                f1 = min(t, f0 + FRAMES_PER_CALL)
                windows = torch.stack([zp[i, f : f + 2 * k + 1] for f in range(f0, f1)])  # (n, 2K+1, Y, X)
                inp = torch.zeros((f1 - f0, 2 * k + 1, side, side), dtype=torch.float32, device=photons.device)
                inp[:, :, :hgt, :wid] = (windows - self.level) / self.scale
                with torch.no_grad():
                    raw = self.net(inp, mask.expand(f1 - f0, -1, -1, -1))
                    p0, p1 = self.net.params(raw.float(), self.level, self.scale)
                post = self._posterior(z[i, f0:f1], p0[:, :hgt, :wid], p1[:, :hgt, :wid])
                spread = self.estimate == "std"
                out[i, f0:f1] = (post * self.factor - (0.0 if spread else self.shift)).float()
        return out
