"""L-BFGS on device tensors, with a bounded history and no host synchronisation.

torch.optim.LBFGS calls ``.item()`` several times per step (tolerance checks, the curvature
test), each a GPU→CPU sync that stalls the pipeline. This version makes the same updates as
torch's without a line search, with every data-dependent choice done as tensor arithmetic:
a pair that fails the curvature test is stored with ρ = 0, which makes it a no-op in the
two-loop recursion. It always runs the steps it is asked for (no early stop), which is what
a progress bar wants anyway.

Memory: ``history`` pairs of (s, y), each the size of the image, plus three more vectors.
"""

from __future__ import annotations

import torch


class LBFGS:
    """Minimises f(x) over a flat parameter; call ``step(grad)`` after each gradient."""

    def __init__(self, param: torch.Tensor, *, history: int = 16, lr: float = 1.0) -> None:
        self.param = param
        self.history = history
        self.lr = lr
        n = param.numel()
        opts = {"device": param.device, "dtype": param.dtype}
        self._s = torch.zeros(history, n, **opts)
        self._y = torch.zeros(history, n, **opts)
        self._rho = torch.zeros(history, **opts)
        self._order: list[int] = []  # slot indices, oldest first
        self._prev_grad = torch.zeros(n, **opts)
        self._direction = torch.zeros(n, **opts)
        self._h_diag = torch.ones((), **opts)
        self._t = torch.zeros((), **opts)
        self.steps = 0

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        g = grad.reshape(-1)
        if self.steps == 0:
            direction = -g
            # torch's first step: at most 1/‖g‖₁, so the first move is a sane size.
            self._t = torch.clamp(1.0 / g.abs().sum(), max=1.0) * self.lr
        else:
            self._remember(g - self._prev_grad, self._direction * self._t)
            direction = self._two_loop(g)
            self._t = torch.full_like(self._t, self.lr)
        self._prev_grad.copy_(g)
        self._direction.copy_(direction)
        self.param.view(-1).add_(direction * self._t)
        self.steps += 1

    def _remember(self, y: torch.Tensor, s: torch.Tensor) -> None:
        ys = torch.dot(y, s)
        accept = ys > 1e-10
        full = len(self._order) == self.history
        slot = self._order.pop(0) if full else len(self._order)
        self._order.append(slot)
        self._s[slot].copy_(s)
        self._y[slot].copy_(y)
        self._rho[slot] = torch.where(accept, 1.0 / ys.clamp_min(1e-10), torch.zeros_like(ys))
        self._h_diag = torch.where(accept, ys / torch.dot(y, y).clamp_min(1e-30), self._h_diag)

    def _two_loop(self, g: torch.Tensor) -> torch.Tensor:
        q = -g
        alphas = []
        for slot in reversed(self._order):
            alpha = torch.dot(self._s[slot], q) * self._rho[slot]
            q = q - alpha * self._y[slot]
            alphas.append(alpha)
        r = q * self._h_diag
        for slot, alpha in zip(self._order, reversed(alphas)):
            beta = torch.dot(self._y[slot], r) * self._rho[slot]
            r = r + self._s[slot] * (alpha - beta)
        return r
