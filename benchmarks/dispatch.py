"""Counting the operations a piece of torch code dispatches: on a GPU each is a kernel launch.

Views (reshape, select, transpose…) only change metadata and launch nothing, so they are left
out. A GPU step that is a millisecond of arithmetic cannot afford hundreds of launches at
several microseconds of host time each; this is how the tests and benchmarks keep count.
"""

from __future__ import annotations

from typing import Any

from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

from engine.network import VGGEncoder
from engine.settings import StylizeSettings
from engine.transfer import stylize


class LaunchCounter(TorchDispatchMode):
    """``with LaunchCounter() as c: …`` then ``c.count``."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if not func.is_view:
            self.count += 1
        return func(*args, **(kwargs or {}))


def ops_per_step(
    net: VGGEncoder, content: Image.Image, style: Image.Image, settings: StylizeSettings
) -> float:
    """Operations per optimisation step of a whole job: two step counts, so set-up cancels."""
    counts = []
    for steps in (5, 15):
        with LaunchCounter() as counter:
            stylize(content, [style], settings.replace(steps=steps), network=net)
        counts.append(counter.count)
    return (counts[1] - counts[0]) / 10


if __name__ == "__main__":
    from engine.network import load_network
    from engine.samples import make_content, make_style

    net = load_network("random:0", "cpu")
    for optimizer in ("lbfgs", "adam"):
        settings = StylizeSettings(size=32, seed=0, optimizer=optimizer)
        print(optimizer, ops_per_step(net, make_content(32), make_style(32), settings))
