"""The blind spot is exact; the receptive-field bound holds; heads are bounded."""

from __future__ import annotations

import pytest
import torch

from smlmdn.denoise.network import BlindSpotNet, NetConfig, UpOnlyUNet, receptive_halo


def _grad_at(net, x, p, out_index=0):
    x = x.clone().requires_grad_(True)
    net(x)[0, out_index, p[0], p[1]].backward()
    return x.grad[0]


@pytest.mark.parametrize("context,mode", [(0, "stem"), (1, "stem"), (2, "stem"), (1, "branch"), (2, "branch")])
def test_whole_net_blind_spot(context, mode):
    torch.manual_seed(0)
    cfg = NetConfig(width=6, depth=2, context=context, context_mode=mode)
    net = BlindSpotNet(cfg).double()
    x = torch.randn(1, cfg.in_frames, 32, 32, dtype=torch.float64)
    for p in [(0, 0), (13, 17), (31, 5), (16, 16)]:
        for out in (0, 1):
            g = _grad_at(net, x, p, out)
            assert g[context, p[0], p[1]] == 0.0  # centre frame's centre pixel: hidden, exactly
            # but the rest of the centre frame's neighbourhood is seen
            assert (g[context] != 0).sum() > 0.5 * 32 * 32
            if context:
                # neighbouring frames' value AT the pixel is seen (the temporal path is not blind)
                assert g[context - 1, p[0], p[1]] != 0.0 and g[context + 1, p[0], p[1]] != 0.0


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_stem_neighbours_enter_every_rotation_non_blind_and_the_centre_frame_stays_blind(k):
    """The stem design: in each rotation branch the neighbour channels reach the pixel's own row and
    the row beyond it (a non-blind path through the whole U-Net), the centre frame strictly above."""
    torch.manual_seed(3)
    unet = UpOnlyUNet(1, 4, 2, side_in=2).double()
    x = torch.randn(1, 1, 32, 32, dtype=torch.float64, requires_grad=True)
    nb = torch.randn(1, 2, 32, 32, dtype=torch.float64, requires_grad=True)
    rot = lambda t: torch.rot90(t, k, dims=(2, 3))  # noqa: E731
    out = torch.rot90(unet(rot(x), None, rot(nb)), -k, dims=(2, 3))
    p = (14, 19)
    out[0, :, p[0], p[1]].sum().backward()
    gc, gn = x.grad[0, 0], nb.grad[0].abs().sum(0)
    nz = gc.nonzero()
    beyond = {0: nz[:, 0] < p[0], 1: nz[:, 1] > p[1], 2: nz[:, 0] > p[0], 3: nz[:, 1] < p[1]}[k]
    assert gc[p] == 0.0 and bool(beyond.all())
    assert gn[p] != 0.0  # the neighbours' value at the pixel itself is used
    step = {0: (1, 0), 1: (0, -1), 2: (-1, 0), 3: (0, 1)}[k]  # one pixel past the pixel, away from the branch's side
    assert gn[p[0] + step[0], p[1] + step[1]] != 0.0


def test_stem_is_blind_even_when_the_neighbours_equal_the_centre_frame():
    """A static scene (neighbours == centre frame): perturbing the centre frame's pixel alone changes
    nothing at that pixel; perturbing it in the neighbours does (they are a legitimate source)."""
    torch.manual_seed(4)
    cfg = NetConfig(width=6, depth=2, context=1, context_mode="stem")
    net = BlindSpotNet(cfg).double().eval()
    f = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    x = f.repeat(1, 3, 1, 1)
    base = net(x)[0, :, 8, 8]
    xc = x.clone()
    xc[0, 1, 8, 8] += 5.0
    assert torch.equal(net(xc)[0, :, 8, 8], base)
    xn = x.clone()
    xn[0, 0, 8, 8] += 5.0
    assert not torch.equal(net(xn)[0, :, 8, 8], base)


def test_stem_and_branch_have_different_weights_and_unknown_mode_is_refused():
    stem = BlindSpotNet(NetConfig(width=4, depth=1, context=1))
    branch = BlindSpotNet(NetConfig(width=4, depth=1, context=1, context_mode="branch"))
    assert any(k.startswith("unet.side") for k in stem.state_dict())
    assert any(k.startswith("ctx.") for k in branch.state_dict()) and not any("side" in k for k in branch.state_dict())
    with pytest.raises(ValueError, match="context_mode"):
        BlindSpotNet(NetConfig(width=4, depth=1, context=1, context_mode="late"))


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_each_rotation_branch_sees_only_rows_strictly_above(k):
    torch.manual_seed(1)
    unet = UpOnlyUNet(1, 4, 2).double()
    x = torch.randn(1, 1, 32, 32, dtype=torch.float64, requires_grad=True)
    xr = torch.rot90(x, k, dims=(2, 3))
    out = torch.rot90(unet(xr), -k, dims=(2, 3))
    p = (14, 19)
    out[0, :, p[0], p[1]].sum().backward()
    g = x.grad[0, 0]
    assert g[p] == 0.0
    # the branch's half-plane: rotation k looks up / right / down / left of the pixel, never at its line
    nz = g.nonzero()
    axis_vals = {0: nz[:, 0] < p[0], 1: nz[:, 1] > p[1], 2: nz[:, 0] > p[0], 3: nz[:, 1] < p[1]}[k]
    assert len(nz) > 0 and bool(axis_vals.all())


@pytest.mark.parametrize("mode", ["stem", "branch"])
def test_receptive_halo_bounds_the_gradient(mode):
    torch.manual_seed(2)
    cfg = NetConfig(width=4, depth=2, context=1, context_mode=mode)
    net = BlindSpotNet(cfg).double()
    side = 96
    x = torch.randn(1, cfg.in_frames, side, side, dtype=torch.float64)
    p = (48, 48)
    g = _grad_at(net, x, p).abs().sum(0)
    nz = g.nonzero()
    reach = (nz - torch.tensor(p)).abs().max().item()
    assert 0 < reach <= receptive_halo(cfg)


def test_heads_are_bounded_even_for_extreme_raw_outputs():
    cfg = NetConfig(width=4, depth=1)
    net = BlindSpotNet(cfg)
    raw = torch.tensor([[-1e4, 1e4], [1e4, -1e4]], dtype=torch.float32).reshape(2, 2, 1, 1).repeat(1, 1, 1, 1)
    raw = torch.stack([torch.tensor([[-1e4]]), torch.tensor([[1e4]])]).reshape(1, 2, 1, 1).repeat(2, 1, 1, 1)
    raw[1] = -raw[1]
    m, a = net.params(raw, level=10.0, scale=3.0)
    assert torch.all(m >= cfg.m_floor) and torch.all(m <= cfg.m_ceiling)
    assert torch.all(a >= cfg.a_min * 0.999) and torch.all(a <= cfg.a_max * 1.001)
    assert torch.all(torch.isfinite(m)) and torch.all(torch.isfinite(a))


def test_rejects_non_square_or_misaligned_input():
    net = BlindSpotNet(NetConfig(width=4, depth=2))
    with pytest.raises(ValueError):
        net(torch.zeros(1, 1, 16, 20))
    with pytest.raises(ValueError):
        net(torch.zeros(1, 1, 18, 18))


def test_non_blind_bound_sees_the_pixel_and_stays_within_the_halo():
    """``blind=False`` (the supervised bound's network): the centre pixel of the centre frame is used,
    and the output still depends on nothing beyond :func:`receptive_halo`."""
    torch.manual_seed(5)
    cfg = NetConfig(width=6, depth=2, context=1, blind=False)
    net = BlindSpotNet(cfg).double()
    x = torch.randn(1, cfg.in_frames, 64, 64, dtype=torch.float64)
    p = (30, 33)
    g = _grad_at(net, x, p).abs().sum(0)
    assert g[p] != 0.0
    far = receptive_halo(cfg)
    outside = torch.ones_like(g, dtype=torch.bool)
    outside[max(0, p[0] - far) : p[0] + far + 1, max(0, p[1] - far) : p[1] + far + 1] = False
    assert float(g[outside].abs().sum()) == 0.0
