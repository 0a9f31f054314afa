"""Recurrent Inference Machine (Putzky & Welling 2017; Morningstar et al. 2019) for the source.

Each iteration feeds the current source estimate x_t, the log-likelihood gradient
g_t = F^T (y - F x_t) / sigma^2 and a constant noise channel to a small U-shaped network whose
bottleneck is a convolutional GRU (update and reset gates) at 1/4 resolution (plus an optional
second GRU at 1/2 resolution); it returns x_{t+1} = x_t + Delta_t.  The hidden state lives at
reduced resolution to keep the parameter budget and the CPU cost (see RIMUpdateNetwork).

Gradient scaling: |g_t| scales like 1/sigma^2 times the data's flux scale and so spans orders of
magnitude between examples (SNR ~5-100), which saturates a network fed raw values.  We divide
g_t by one per-example constant, the RMS of g_0 (kept fixed over the iterations so that the
network still sees the gradient shrink as it converges).  sigma^2 cancels in that ratio, so the
noise level is given to the network separately, as the channel log10(sigma) + 2 (sigma in the
normalised flux units of y).

Start: x_0 = a F^T (y - b_bg) with the scalar a minimising ||y - b_bg - a F F^T (y - b_bg)||^2,
i.e. the back-projection at the flux level that best reproduces the data.

Noise: pass ``noise_sigma`` (B,) when known; otherwise :func:`estimate_noise_sigma` takes
1.4826 x the median absolute deviation of the image border (width npix / 12), where lensed arcs
are rare.  An arc or lens light reaching the border biases that estimate high.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from astrorim.model.forward import BoundForwardOperator

MAD_TO_SIGMA = 1.482602218505602
SIGMA_FLOOR = 1e-4  # normalised flux units; keeps log10(sigma) finite for noiseless inputs


def estimate_noise_sigma(y: torch.Tensor, border: int | None = None) -> torch.Tensor:
    """Robust per-example noise level (B,) of images y (B, H, W) from the border pixels' MAD."""
    if y.ndim != 3:
        raise ValueError(f"y must be (B, H, W), got {tuple(y.shape)}")
    b, h, w = y.shape
    border = max(1, min(h, w) // 12) if border is None else int(border)
    if not 0 < 2 * border < min(h, w):
        raise ValueError(f"border {border} does not fit a {h} x {w} image")
    mask = torch.ones(h, w, dtype=torch.bool, device=y.device)
    mask[border:h - border, border:w - border] = False
    edge = y[:, mask].float()
    med = edge.median(dim=1, keepdim=True).values
    return MAD_TO_SIGMA * (edge - med).abs().median(dim=1).values


def _rms(t: torch.Tensor) -> torch.Tensor:
    return t.pow(2).mean(dim=(-2, -1)).sqrt()


class ConvGRUCell(nn.Module):
    """Convolutional GRU: z, r = sigma(conv[x, h]); n = tanh(conv[x, r h]); h' = (1 - z) h + z n."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.hidden_channels = hidden_channels
        pad = kernel_size // 2
        self.gates = nn.Conv2d(in_channels + hidden_channels, 2 * hidden_channels, kernel_size, padding=pad)
        self.candidate = nn.Conv2d(in_channels + hidden_channels, hidden_channels, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        n = torch.tanh(self.candidate(torch.cat([x, r * h], dim=1)))
        return h + z * (n - h)


class RIMUpdateNetwork(nn.Module):
    """One RIM step: (inputs at full resolution, hidden states) -> (Delta, new hidden states).

    The full-resolution inputs are folded 2x2 into channels (pixel_unshuffle) and Delta is unfolded
    from 4 channels (pixel_shuffle): both are lossless rearrangements, so every source pixel keeps
    its own value, while no convolution runs at full resolution (on a 2-core CPU those were the
    slowest layers per multiply-add).  Layout, for a 96 px image:

        [x, g, noise] 96^2 -> unshuffle -> 12 x 48^2 -> conv3x3 -> c1 x 48^2 (e1)
        -> conv3x3 stride 2 -> c2 x 24^2 -> ConvGRU(hidden) 24^2 (h)
        [optional ConvGRU(fine_hidden) on e1 at 48^2 (f)]
        h -> convT 2x2 -> c1 x 48^2, concat (f or e1) -> conv3x3 -> c1 -> conv3x3 -> 4 -> shuffle -> Delta
    """

    def __init__(self, in_channels: int = 3, channels: tuple[int, int] = (32, 64),
                 hidden: int = 64, fine_hidden: int = 0, output_init_scale: float = 0.1):
        super().__init__()
        c1, c2 = channels
        self.hidden = hidden
        self.fine_hidden = fine_hidden
        self.enc1 = nn.Conv2d(4 * in_channels, c1, 3, padding=1)
        self.enc2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.gru = ConvGRUCell(c2, hidden)
        self.fine_gru = ConvGRUCell(c1, fine_hidden) if fine_hidden > 0 else None
        self.up = nn.ConvTranspose2d(hidden, c1, 2, stride=2)
        self.dec = nn.Conv2d(c1 + (fine_hidden or c1), c1, 3, padding=1)
        self.out = nn.Conv2d(c1, 4, 3, padding=1)
        with torch.no_grad():
            # Small first steps; not zero, so every layer receives gradient from the start.
            self.out.weight.mul_(output_init_scale)
            self.out.bias.zero_()

    def initial_state(self, batch: int, height: int, width: int, device, dtype) -> list[torch.Tensor]:
        states = [torch.zeros(batch, self.hidden, height // 4, width // 4, device=device, dtype=dtype)]
        if self.fine_gru is not None:
            states.append(torch.zeros(batch, self.fine_hidden, height // 2, width // 2,
                                      device=device, dtype=dtype))
        return states

    def forward(self, inputs: torch.Tensor, states: list[torch.Tensor]):
        e1 = F.relu(self.enc1(F.pixel_unshuffle(inputs, 2)))
        h = self.gru(F.relu(self.enc2(e1)), states[0])
        new_states = [h]
        skip = e1
        if self.fine_gru is not None:
            skip = self.fine_gru(e1, states[1])
            new_states.append(skip)
        d = F.relu(self.dec(torch.cat([F.relu(self.up(h)), skip], dim=1)))
        return F.pixel_shuffle(self.out(d), 2).squeeze(1), new_states


class RIM(nn.Module):
    """The recurrent solver: T applications of :class:`RIMUpdateNetwork` driven by F_Theta."""

    def __init__(self, n_iter: int = 10, channels: tuple[int, int] = (32, 64),
                 hidden: int = 64, fine_hidden: int = 0):
        super().__init__()
        if n_iter < 1:
            raise ValueError(f"n_iter must be >= 1, got {n_iter}")
        self.n_iter = int(n_iter)
        self.update = RIMUpdateNetwork(3, tuple(channels), hidden, fine_hidden)

    @staticmethod
    def initial_source(y: torch.Tensor, op: BoundForwardOperator) -> torch.Tensor:
        """x_0: the back-projection F^T (y - b_bg), scaled to best reproduce y in least squares."""
        data = y.to(op.dtype) - op.background
        back = op.adjoint(data)
        proj = op.linear(back)
        num = (proj * data).sum(dim=(-2, -1))
        den = (proj * proj).sum(dim=(-2, -1)).clamp_min(torch.finfo(proj.dtype).tiny)
        return back * (num / den).view(-1, 1, 1)

    def forward(self, y: torch.Tensor, op: BoundForwardOperator, noise_sigma: torch.Tensor,
                n_iter: int | None = None) -> list[torch.Tensor]:
        """Iterates [x_1, ..., x_T], each (B, H, W) float32, for normalised observations y."""
        n_iter = self.n_iter if n_iter is None else int(n_iter)
        if n_iter < 1:
            raise ValueError(f"n_iter must be >= 1, got {n_iter}")
        b, h, w = y.shape
        if h % 4 or w % 4:
            raise ValueError(f"the RIM needs image sides divisible by 4, got {h} x {w}")
        sigma = noise_sigma.to(op.dtype).clamp_min(SIGMA_FLOOR).view(b, 1, 1)
        noise_map = (torch.log10(sigma) + 2.0).expand(b, h, w)
        x = self.initial_source(y, op)
        y = y.to(op.dtype)
        param = next(self.parameters())
        states = self.update.initial_state(b, h, w, y.device, param.dtype)
        scale = None
        iterates = []
        for _ in range(n_iter):
            grad = op.adjoint(y - op.forward(x)) / sigma ** 2
            if scale is None:
                scale = _rms(grad).clamp_min(torch.finfo(grad.dtype).tiny).view(b, 1, 1)
            inputs = torch.stack([x, grad / scale, noise_map], dim=1)
            delta, states = self.update(inputs, states)
            x = x + delta.to(x.dtype)
            iterates.append(x)
        return iterates
