"""The losses against values worked out by hand on tiny tensors."""

from __future__ import annotations

import pytest
import torch

from engine import losses


def test_gram_matrix_by_hand() -> None:
    # Two channels over four positions: f0 = [1, 2, 3, 4], f1 = [0, 1, 0, 1].
    features = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, 1.0]]).reshape(1, 2, 2, 2)
    gram = losses.gram_matrix(features)
    # f0·f0 = 30, f0·f1 = 6, f1·f1 = 2, each divided by the 4 positions.
    expected = torch.tensor([[[7.5, 1.5], [1.5, 0.5]]])
    torch.testing.assert_close(gram, expected)


def test_gram_matrix_is_size_invariant_for_a_repeated_texture() -> None:
    tile = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    big = tile.repeat(1, 1, 3, 3)
    torch.testing.assert_close(losses.gram_matrix(tile), losses.gram_matrix(big))


def test_relative_mse_by_hand() -> None:
    target = torch.tensor([3.0, 4.0])  # ‖t‖² = 25
    value = torch.tensor([3.0, 1.0])  # ‖v − t‖² = 9
    assert losses.relative_mse(value, target).item() == pytest.approx(9 / 25, rel=1e-6)
    assert losses.content_loss(target, target).item() == 0.0
    assert losses.content_loss(torch.zeros(2), target).item() == pytest.approx(1.0, rel=1e-6)


def test_style_loss_compares_grams() -> None:
    features = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, 1.0]]).reshape(1, 2, 2, 2)
    target = torch.tensor([[[7.5, 1.5], [1.5, 0.0]]])  # differs from the Gram by 0.5 in one entry
    expected = 0.25 / (7.5**2 + 2 * 1.5**2)
    assert losses.style_loss(features, target).item() == pytest.approx(expected, rel=1e-6)
    assert losses.style_loss(features, losses.gram_matrix(features)).item() == 0.0


def test_total_variation_by_hand() -> None:
    image = torch.tensor([[0.0, 1.0], [0.0, 3.0]]).reshape(1, 1, 2, 2)
    # Vertical differences: 0 and 2 → mean 2; horizontal: 1 and 3 → mean 5.
    assert losses.total_variation(image).item() == pytest.approx(7.0)
    assert losses.total_variation(torch.ones(1, 3, 5, 5)).item() == 0.0


def test_blend_grams_is_the_weighted_mean_and_ignores_zero_weights() -> None:
    a, b = torch.full((1, 2, 2), 2.0), torch.full((1, 2, 2), 6.0)
    torch.testing.assert_close(losses.blend_grams([a, b], [1.0, 3.0]), torch.full((1, 2, 2), 5.0))
    assert torch.equal(losses.blend_grams([a, b], [1.0, 0.0]), a)
