"""Our device L-BFGS makes the same moves as torch.optim.LBFGS without a line search."""

from __future__ import annotations

import pytest
import torch

from benchmarks.dispatch import LaunchCounter
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
    assert opt.pairs == 3
    assert opt._w.shape == (6, 12)  # 3 pairs of (s, y), no more
    (grad,) = torch.autograd.grad(_loss(x, q, b), x)
    assert _loss(x, q, b).item() < first
    assert grad.abs().max().item() < 1e-4


def _launches_per_step(history: int) -> int:
    q, b = _problem()
    x = torch.zeros(12, dtype=torch.float64, requires_grad=True)
    opt = LBFGS(x, history=history)
    for _ in range(history + 3):  # past a full ring, so every slot is in use
        (grad,) = torch.autograd.grad(_loss(x, q, b), x)
        opt.step(grad)
    with LaunchCounter() as counter:
        opt.step(grad)
    return counter.count


def test_launches_per_step_are_few_and_do_not_grow_with_history() -> None:
    # On a GPU each operation is a kernel launch costing the host several microseconds;
    # the two-loop recursion made about 10 per stored pair (169 a step with 16 pairs).
    small, large = _launches_per_step(4), _launches_per_step(32)
    assert small == large
    assert large <= 60


@pytest.mark.parametrize("seed", [1, 3])
def test_pairs_failing_the_curvature_test_are_left_out_as_torch_does(seed: int) -> None:
    # A wavy function, where some steps see y·s < 0. torch drops such a pair; ours keeps its
    # slot masked. With a history longer than the run, the two must make the same moves.
    def wavy(x: torch.Tensor) -> torch.Tensor:
        return torch.cos(3 * x).sum() + 0.05 * (x**2).sum()

    start = torch.randn(6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ours = (start * 0.3).requires_grad_(True)
    theirs = (start * 0.3).requires_grad_(True)
    opt = LBFGS(ours, history=10, lr=0.2)
    reference = torch.optim.LBFGS(
        [theirs], lr=0.2, max_iter=1, history_size=10, tolerance_grad=0, tolerance_change=0
    )

    def closure() -> torch.Tensor:
        reference.zero_grad()
        loss = wavy(theirs)
        loss.backward()
        return loss

    for _ in range(9):
        (grad,) = torch.autograd.grad(wavy(ours), ours)
        opt.step(grad)
        reference.step(closure)
        torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-9, atol=1e-12)
    stored = opt._valid[: opt.pairs]
    assert 0 < stored.sum().item() < opt.pairs  # some pairs were refused, some used


def test_with_bounds_steps_stay_in_the_box_and_the_pair_holds_the_step_taken() -> None:
    # The minimum of this quadratic lies outside [0, 1] in some coordinates.
    d = torch.logspace(0, 2, 8, dtype=torch.float64)
    target = torch.linspace(-0.5, 1.5, 8, dtype=torch.float64)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (d * (x - target) ** 2).sum()

    x = torch.full((8,), 0.5, dtype=torch.float64, requires_grad=True)
    opt = LBFGS(x, history=4, bounds=(0.0, 1.0))
    for _ in range(40):
        before = x.detach().clone()
        (grad,) = torch.autograd.grad(loss(x), x)
        opt.step(grad)
        slot = opt._stored % opt.history  # where this step's s went
        assert x.min().item() >= 0.0 and x.max().item() <= 1.0
        torch.testing.assert_close(opt._w[slot], x.detach() - before)
    # The box's minimiser of a separable quadratic is the clipped target.
    torch.testing.assert_close(x.detach(), target.clamp(0, 1), rtol=0, atol=1e-6)
