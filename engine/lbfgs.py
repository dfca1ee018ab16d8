"""L-BFGS on device tensors: a bounded history, no host synchronisation, few kernel launches.

torch.optim.LBFGS calls ``.item()`` several times per step (tolerance checks, the curvature
test), each a GPU→CPU sync that stalls the pipeline. It also runs the two-loop recursion: four
or five small kernels per stored pair, so about 170 launches a step with 16 pairs. On a fast
GPU the network's own step takes a millisecond or two, and the host could not keep up.

This version makes the same moves as torch's (without a line search) through the compact form
of Byrd, Nocedal and Schnabel (1994), H = γI + [S γY] M [S γY]ᵀ: two matrix-vector products
over the history, a pair of m×m triangular solves and a few m-sized operations. That is under
50 launches a step whatever the history size. Every data-dependent choice is tensor arithmetic:
a pair that fails the curvature test keeps its slot but is masked out, which removes it from
the compact form exactly. It always runs the steps it is asked for (no early stop), which is
what a progress bar wants anyway.

With ``bounds``, each step is clipped to the box and the pair stores the step actually taken.
Clipping after an unaware optimiser (as the usual recipes do) gives it pairs that describe a
move it never made; the curvature model then goes wrong and the loss jumps by 1.4-3x now and
then, often right at the end. With the true step it falls steadily.

Memory: ``history`` pairs of (s, y), each the size of the image, plus one more vector.
"""

from __future__ import annotations

from typing import TypedDict

import torch

from engine.devices import exact_matmul


class _TensorOptions(TypedDict):
    """Where the optimiser's state lives: the parameter's device and dtype."""

    device: torch.device
    dtype: torch.dtype


class LBFGS:
    """Minimises f(x) over a flat parameter; call ``step(grad)`` after each gradient."""

    def __init__(
        self,
        param: torch.Tensor,
        *,
        history: int = 16,
        lr: float = 1.0,
        bounds: tuple[float, float] | None = None,
    ) -> None:
        self.param = param
        self.bounds = bounds
        self.history = m = history
        self.lr = lr
        n = param.numel()
        opts: _TensorOptions = {"device": param.device, "dtype": param.dtype}
        # Rows [0, m) hold s by slot, rows [m, 2m) hold y: one matrix, so products over the
        # whole history are single matrix-vector products.
        self._w = torch.zeros(2 * m, n, **opts)
        self._sy = torch.zeros(m, m, **opts)  # s_i·y_j, by slot
        self._yy = torch.zeros(m, m, **opts)  # y_i·y_j, by slot
        self._valid = torch.zeros(m, **opts)  # 1 where a stored pair passed the curvature test
        self._stored = 0  # pairs stored so far; a host count, so no sync to know the order
        # Slot order, oldest first, for each ring position; and each slot's (s, y) rows.
        slots = torch.arange(m, device=param.device)
        self._orders = torch.stack([(slots + k) % m for k in range(m)])
        self._pair_rows = torch.stack([slots, slots + m], dim=1)
        self._prev_grad = torch.zeros(n, **opts)
        self._gamma = torch.ones((), **opts)  # H₀ = γI, from the newest accepted pair
        self._t: torch.Tensor | float = lr
        self.steps = 0

    @property
    def pairs(self) -> int:
        """Pairs held (accepted or masked), at most ``history``."""
        return min(self._stored, self.history)

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        g = grad.reshape(-1)
        if self.steps == 0:
            direction = -g
            # torch's first step: at most 1/‖g‖₁, so the first move is a sane size.
            self._t = torch.clamp(1.0 / g.abs().sum(), max=1.0) * self.lr
        else:
            with exact_matmul():  # TF32 would round every value to 10 bits of mantissa
                self._remember(g)
                direction = self._direction(g)
            self._t = self.lr
        self._prev_grad.copy_(g)
        # The step s goes straight into the slot the next pair will use: that slot holds the
        # oldest pair, which the next step drops anyway.
        s = self._w[self._stored % self.history]
        x = self.param.view(-1)
        if self.bounds is None:
            torch.mul(direction, self._t, out=s)
            x.add_(s)
        else:
            s.copy_(x)
            x.add_(direction * self._t).clamp_(*self.bounds)
            torch.sub(x, s, out=s)  # the step actually taken
        self.steps += 1

    def _remember(self, g: torch.Tensor) -> None:
        m, slot = self.history, self._stored % self.history
        w = self._w
        torch.sub(g, self._prev_grad, out=w[m + slot])
        # One product gives the new pair's row and column of SᵀY and YᵀY.
        p = w @ w.index_select(0, self._pair_rows[slot]).T  # (2m, 2): [Sᵀs Sᵀy; Yᵀs Yᵀy]
        self._sy[:, slot] = p[:m, 1]
        self._sy[slot, :] = p[m:, 0]
        self._yy[:, slot] = p[m:, 1]
        self._yy[slot, :] = p[m:, 1]
        ys, yy = p[slot, 1], p[m + slot, 1]
        accept = ys > 1e-10
        self._valid[slot] = accept
        self._gamma = torch.where(accept, ys / yy.clamp_min(1e-30), self._gamma)
        self._stored += 1

    def _direction(self, g: torch.Tensor) -> torch.Tensor:
        """-H·g in the compact form, over the pairs in age order; masked pairs drop out."""
        m = self.history
        order = self._orders[self._stored % m if self._stored >= m else 0]
        ab = self._w @ g  # [Sᵀg; Yᵀg], by slot
        v = self._valid[order]
        a = ab[order] * v
        b = ab[order + m] * v
        mask = v[:, None] * v[None, :]
        sy = self._sy[order][:, order] * mask
        yy = self._yy[order][:, order] * mask
        # R = triu(SᵀY); a masked pair gets a 1 on the diagonal so R stays invertible, and
        # its zero row and column keep it out of everything else.
        r = torch.triu(sy) + torch.diag(1 - v)
        gamma = self._gamma
        u = torch.linalg.solve_triangular(r, a[:, None], upper=True)
        rhs = torch.diagonal(sy)[:, None] * u + gamma * (yy @ u - b[:, None])
        top = torch.linalg.solve_triangular(r.T, rhs, upper=False)
        # H·g = γg + S·top − γY·u; the coefficients go back to slot order for one product.
        coef = torch.zeros(2 * m, device=g.device, dtype=g.dtype)
        coef.index_copy_(0, order, -top[:, 0])
        coef.index_copy_(0, order + m, gamma * u[:, 0])
        return torch.addcmul(self._w.T @ coef, g, gamma, value=-1)
