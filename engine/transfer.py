"""``stylize()``: Gatys et al.'s optimisation, from PIL images to a PIL image.

A job is one or more scales (coarse to fine). At each, ``engine.objective`` computes the
content and style targets once, and ``engine.optimize`` runs the steps: each runs the network
once forward and once backward (to the image only: the weights are frozen).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from PIL import Image

from engine import colors
from engine.devices import configure_cuda, effective_precision
from engine.errors import ImageError
from engine.network import VGGEncoder, load_network
from engine.objective import GatysObjective, LossParts, prepare_inputs, style_side
from engine.optimize import StepCallback, initial_image, optimize_image, optimizer_for
from engine.progress import CancelCheck, Losses, Progress, ProgressCallback
from engine.pyramid import MIN_SIDE, pyramid_sizes, scaled_size, split_steps, upsample
from engine.settings import StylizeSettings
from engine.tensors import image_to_tensor, tensor_to_image


def decode_sides(settings: StylizeSettings) -> tuple[int, int]:
    """The longest sides stylize() resizes the content and the styles to, at most.

    A decoder may stop there (``load_image(..., fit=...)``) without changing the result.
    """
    return settings.size, style_side(settings.size, settings.style_scale)


def stylize(
    content: Image.Image,
    styles: Sequence[Image.Image],
    settings: StylizeSettings,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    network: VGGEncoder | None = None,
    initial: Image.Image | None = None,
) -> Image.Image:
    """Repaints ``content`` in the style of ``styles``; returns an RGB image.

    With ``network`` given (a worker's warm encoder), its device and weights are used and
    ``settings.device`` / ``settings.weights`` are ignored. With ``initial`` (an earlier
    result of the same job, smaller), the optimisation continues from it instead of starting
    from ``settings.init``: the pyramid's scales it already covers are skipped, and the first
    remaining one starts from it upsampled (Gatys et al.'s coarse-to-fine, resumed).
    Raises ``StopRequested`` within one step of ``cancel()`` turning true. The seed used is
    in ``image.info["stylize:seed"]``.
    """
    settings.check_styles(len(styles))
    settings = settings.resolved()
    started = time.perf_counter()
    if network is None:
        network = load_network(settings.weights, settings.device)
    prepare_network(network, settings.precision)
    reporter = _Reporter(settings, started, on_progress) if on_progress is not None else None
    rgb_styles = [style.convert("RGB") for style in styles]
    start = None if initial is None else initial.convert("RGB")
    result = _run(network, content.convert("RGB"), rgb_styles, settings, reporter, cancel, start)
    result.info["stylize:seed"] = str(settings.seed)
    return result


def prepare_network(network: VGGEncoder, precision: str) -> None:
    """On CUDA: the process-wide flags for ``precision``, and the network in channels-last."""
    if network.device.type == "cuda":
        configure_cuda(effective_precision(precision, network.device))
        network.to(memory_format=torch.channels_last)


def evaluate_loss(
    result: Image.Image,
    content: Image.Image,
    styles: Sequence[Image.Image],
    settings: StylizeSettings,
    *,
    network: VGGEncoder,
) -> float:
    """The weighted total loss of ``result`` at its own size, always computed in fp32.

    Results made at different precisions (TF32, bf16) or by different optimisers are scored
    on the same scale with it: the quality-parity check of the fast paths.
    """
    settings.check_styles(len(styles))
    settings = settings.replace(precision="fp32")
    prepare_network(network, settings.precision)
    rgb_styles = [style.convert("RGB") for style in styles]
    inputs = prepare_inputs(
        content.convert("RGB"), rgb_styles, settings, result.size, network.device
    )
    objective = GatysObjective(network, settings, inputs.content, inputs.styles)
    x = image_to_tensor(result.convert("RGB"), network.device)
    if settings.preserve_colors == "luminance":
        x = colors.luminance(x)
    with torch.no_grad():
        return float(objective(x).total.item())


def _run(
    network: VGGEncoder,
    content: Image.Image,
    styles: list[Image.Image],
    settings: StylizeSettings,
    reporter: _Reporter | None,
    cancel: CancelCheck | None,
    initial: Image.Image | None = None,
) -> Image.Image:
    final = scaled_size(*content.size, settings.size)
    if min(final) < MIN_SIDE:
        raise ImageError(
            f"This photo is too long and thin: at {settings.size} px its short side would be "
            f"{min(final)} px, and it needs at least {MIN_SIDE}. Crop it, or ask for a "
            "larger size."
        )
    # Coarse scales too narrow for the network are skipped.
    sizes = [
        size
        for size in pyramid_sizes(settings.size, settings.min_scale, settings.coarse_to_fine)
        if min(scaled_size(*content.size, size)) >= MIN_SIDE
    ]
    luminance_only = settings.preserve_colors == "luminance"
    start: torch.Tensor | None = None
    if initial is not None:
        # The scales up to the earlier result's size are done: all the steps go to the finer
        # ones (at least the last).
        sizes = [size for size in sizes if size > max(initial.size)] or sizes[-1:]
        start = image_to_tensor(initial, network.device)
        if luminance_only:
            start = colors.luminance(start)
    steps = split_steps(settings.steps, len(sizes))
    sizes = sizes[len(sizes) - len(steps) :]
    if reporter is not None:
        reporter.total = sum(steps)
    x: torch.Tensor | None = None
    content_rgb: torch.Tensor | None = None
    for scale, (longest, n_steps) in enumerate(zip(sizes, steps)):
        inputs = prepare_inputs(
            content, styles, settings, scaled_size(*content.size, longest), network.device
        )
        objective = GatysObjective(network, settings, inputs.content, inputs.styles)
        if x is None:
            x = initial_image(
                settings.init, inputs.content, inputs.styles[0], settings.seed or 0, start=start
            )
        else:
            x = upsample(x, *inputs.content.shape[-2:])
        content_rgb = inputs.content_rgb
        del inputs  # the style images are done with once their Gram matrices are known
        on_step = None
        if reporter is not None:
            on_step = reporter.at_scale(scale, len(sizes), content_rgb, luminance_only)
        x = optimize_image(
            x, objective, optimizer_for(settings), n_steps, on_step=on_step, cancel=cancel
        )
    assert x is not None and content_rgb is not None
    return _to_image(x, content_rgb, luminance_only)


def _to_image(x: torch.Tensor, content_rgb: torch.Tensor, luminance_only: bool) -> Image.Image:
    if luminance_only:
        x = colors.combine_luminance(x.float(), content_rgb)
    return tensor_to_image(x)


class _Reporter:
    """Numbers the steps over every scale and hands each to ``on_progress`` as a Progress."""

    def __init__(
        self, settings: StylizeSettings, started: float, on_progress: ProgressCallback
    ) -> None:
        self.on_progress = on_progress
        self.started = started
        self.preview_every = settings.preview_every
        self.preview_size = settings.preview_size
        self.step = 0
        self.total = settings.steps  # exact once the pyramid is known

    def at_scale(
        self, scale: int, scales: int, content_rgb: torch.Tensor, luminance_only: bool
    ) -> StepCallback:
        def preview(x: torch.Tensor, side: int) -> Image.Image:
            image = _to_image(x.detach(), content_rgb, luminance_only)
            image.thumbnail((side, side), Image.Resampling.BILINEAR)
            return image

        def on_step(x: torch.Tensor, parts: LossParts, total: torch.Tensor) -> None:
            self.step += 1
            values = tuple(p.detach() for p in (*parts, total))

            def read_losses() -> Losses:
                # One host sync for all four numbers, paid only by a caller that reads them.
                return Losses(*torch.stack([v.float() for v in values]).tolist())

            every = self.preview_every
            shown = None
            if every and (self.step % every == 0 or self.step == self.total):
                shown = preview(x, self.preview_size)
            self.on_progress(
                Progress(
                    step=self.step,
                    total=self.total,
                    scale=scale,
                    scales=scales,
                    size=(x.shape[-1], x.shape[-2]),
                    elapsed=time.perf_counter() - self.started,
                    read_losses=read_losses,
                    preview=shown,
                    render_preview=lambda side: preview(x, side),
                    read_image=lambda: x.detach().clone(),
                )
            )

        return on_step
