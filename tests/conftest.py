"""Fixtures every test module may use, and the markers that sort the suite into layers.

The markers are given here and nowhere else, by module (a test function only where its module
is otherwise quick), so a new test in a marked module is marked too:

- ``e2e``: runs the bot against the fake Discord, or ``python -m bot`` as a process;
- ``ray``: needs a Ray session (the Ray modules, and the Ray half of the backend contract);
- ``slow``: a test that takes a second or more on a 2-core machine (``pytest --durations=0``):
  the modules whose tests start worker processes, Ray or the bot, and in the engine's
  modules the tests that run long optimisations or a fresh Python.

``make test-fast`` (``pytest -m "not slow and not e2e and not ray"``) runs what is left: the
unit layer, in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.engine_fixtures import NET_SEED

if TYPE_CHECKING:  # torch is imported by the tests that ask for the network, not by every run
    from engine.network import VGGEncoder

TESTS = Path(__file__).parent

E2E_MODULES = frozenset({
    "test_bot_e2e", "test_bot_followups_e2e", "test_bot_durability", "test_bot_startup",
    "test_bot_full_disk", "test_bot_ray_e2e", "test_bot_menus_e2e", "test_bot_ops_e2e",
    "test_bot_policy_e2e",
})  # fmt: skip
RAY_MODULES = frozenset({"test_ray_cluster", "test_ray_lifecycle", "test_bot_ray_e2e"})
SLOW_MODULES = frozenset({
    "test_backends", "test_pool", "test_pool_start", "test_worker_signals",
    "test_ray_cluster", "test_ray_lifecycle", "test_bot_ray_e2e",
    "test_bot_e2e", "test_bot_followups_e2e", "test_bot_durability", "test_bot_menus_e2e",
    "test_bot_ops_e2e", "test_bot_policy_e2e",
})  # fmt: skip
SLOW_TESTS: dict[str, frozenset[str]] = {
    "test_transfer": frozenset({
        "test_total_loss_falls_by_more_than_half_in_20_steps",
        "test_lbfgs_loss_falls_without_jumps",
        "test_without_style_the_result_approaches_the_content_features",
    }),
    "test_cli": frozenset({"test_imagenet_weights_offline_exit_2_with_instructions"}),
    "test_network": frozenset({"test_imagenet_weights_come_from_the_torch_hub_cache"}),
}  # fmt: skip
RAY_BACKEND = "ray"
"""The value of a backend parameter (``test_backends.KINDS``) that runs on Ray."""


@pytest.fixture(scope="session")
def net() -> VGGEncoder:
    """VGG19 with random seeded weights (``random:0``) on the CPU. Frozen, so one for all."""
    from engine.network import load_network

    return load_network(f"random:{NET_SEED}", "cpu")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _check_the_tables()
    for item in items:
        module = item.path.stem
        if module in E2E_MODULES:
            item.add_marker(pytest.mark.e2e)
        if module in RAY_MODULES or _on_ray(item):
            item.add_marker(pytest.mark.ray)
        name = getattr(item, "originalname", item.name)
        if module in SLOW_MODULES or name in SLOW_TESTS.get(module, ()):
            item.add_marker(pytest.mark.slow)
        if module in SLOW_TESTS:
            _check_names(item, SLOW_TESTS[module])


def _on_ray(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and RAY_BACKEND in callspec.params.values()


def _check_the_tables() -> None:
    """A renamed module would silently lose its markers: refuse to run instead."""
    named = E2E_MODULES | RAY_MODULES | SLOW_MODULES | SLOW_TESTS.keys()
    missing = sorted(name for name in named if not (TESTS / f"{name}.py").is_file())
    if missing:
        raise pytest.UsageError(f"tests/conftest.py marks modules that are gone: {missing}")


def _check_names(item: pytest.Item, names: frozenset[str]) -> None:
    module = getattr(item, "module", None)
    gone = sorted(name for name in names if module is not None and not hasattr(module, name))
    if gone:
        raise pytest.UsageError(
            f"tests/conftest.py marks tests that are not in {item.path.name}: {gone}"
        )
