"""Our device L-BFGS makes the same moves as torch.optim.LBFGS without a line search."""

from __future__ import annotations

import torch

from engine.lbfgs import LBFGS


def _problem() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(12, 12, generator=g, dtype=torch.float64)
    return a @ a.T + 0.5 * torch.eye(12, dtype=torch.float64), torch.randn(
        12, generator=g, dtype=torch.float64
    )


def _loss(x: torch.Tensor, q: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # A convex quadratic plus a quartic term, so the curvature changes along the way.
    return 0.5 * x @ q @ x - b @ x + 0.01 * (x**4).sum()


def test_matches_torch_lbfgs_step_for_step() -> None:
    q, b = _problem()
    ours = torch.zeros(12, dtype=torch.float64, requires_grad=True)
    theirs = torch.zeros(12, dtype=torch.float64, requires_grad=True)
    opt = LBFGS(ours, history=5)
    reference = torch.optim.LBFGS(
        [theirs], lr=1, max_iter=1, history_size=5, tolerance_grad=0, tolerance_change=0
    )

    def closure() -> torch.Tensor:
        reference.zero_grad()
        loss = _loss(theirs, q, b)
        loss.backward()
        return loss

    for _ in range(25):
        (grad,) = torch.autograd.grad(_loss(ours, q, b), ours)
        opt.step(grad)
        reference.step(closure)
        torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-9, atol=1e-12)


def test_history_is_bounded_and_converges() -> None:
    q, b = _problem()
    x = torch.zeros(12, dtype=torch.float64, requires_grad=True)
    opt = LBFGS(x, history=3)
    first = _loss(x, q, b).item()
    for _ in range(60):
        (grad,) = torch.autograd.grad(_loss(x, q, b), x)
        opt.step(grad)
    assert len(opt._order) == 3
    assert opt._s.shape == (3, 12)
    (grad,) = torch.autograd.grad(_loss(x, q, b), x)
    assert _loss(x, q, b).item() < first
    assert grad.abs().max().item() < 1e-4
