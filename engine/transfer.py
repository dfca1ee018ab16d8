"""``stylize()``: Gatys et al.'s optimisation, from PIL images to a PIL image.

The content and style targets are computed once per scale; each step then runs the network
once forward and once backward (to the image only: the weights are frozen).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from engine import colors, losses
from engine.devices import configure_cuda, effective_precision
from engine.errors import Cancelled, ImageError
from engine.lbfgs import LBFGS
from engine.network import VGGEncoder, load_network
from engine.progress import CancelCheck, Losses, Progress, ProgressCallback
from engine.pyramid import MIN_SIDE, at_least_min_side, pyramid_sizes, scaled_size, split_steps
from engine.settings import StylizeSettings

STYLE_SIDE_CAP = 4096
"""Longest side a style image is resized to, unless the output itself is larger."""


def decode_sides(settings: StylizeSettings) -> tuple[int, int]:
    """The longest sides stylize() resizes the content and the styles to, at most.

    A decoder may stop there (``load_image(..., fit=...)``) without changing the result.
    """
    return settings.size, _style_side(settings.size, settings.style_scale)


def _style_side(longest: int, style_scale: float) -> int:
    # Capped so a large style scale at a large size cannot ask for gigapixels.
    return min(round(longest * style_scale), max(longest, STYLE_SIDE_CAP))


def stylize(
    content: Image.Image,
    styles: Sequence[Image.Image],
    settings: StylizeSettings,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    network: VGGEncoder | None = None,
) -> Image.Image:
    """Repaints ``content`` in the style of ``styles``; returns an RGB image.

    With ``network`` given (a worker's warm encoder), its device and weights are used and
    ``settings.device`` / ``settings.weights`` are ignored. Raises ``Cancelled`` within one
    step of ``cancel()`` turning true. The seed used is in ``image.info["stylize:seed"]``.
    """
    settings.check_styles(len(styles))
    settings = settings.resolved()
    started = time.perf_counter()
    if network is None:
        network = load_network(settings.weights, settings.device)
    run = _Run(network, settings, started, on_progress, cancel)
    result = run.execute(content.convert("RGB"), [s.convert("RGB") for s in styles])
    result.info["stylize:seed"] = str(settings.seed)
    return result


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
    run = _Run(network, settings.replace(precision="fp32").resolved(), 0.0, None, None)
    weights = list(settings.style_weights or [1.0] * len(styles))
    content_rgb = run._tensor(content.convert("RGB"), result.size)
    content_t = colors.luminance(content_rgb) if run.luminance_only else content_rgb
    style_ts = [run._style_tensor(s.convert("RGB"), max(result.size), content_rgb) for s in styles]
    targets = run._targets(content_t, style_ts, weights)
    x = run._tensor(result.convert("RGB"))
    if run.luminance_only:
        x = colors.luminance(x)
    with torch.no_grad():
        return float(sum(run._losses(x, targets)).item())


@dataclass
class _Targets:
    """Per layer: the target and its squared norm, both computed once per scale."""

    content: dict[str, tuple[torch.Tensor, torch.Tensor]]
    style: dict[str, tuple[torch.Tensor, torch.Tensor]]


class _Run:
    """One job's state: device, precision, the seeded generator and the step counter."""

    def __init__(
        self,
        network: VGGEncoder,
        settings: StylizeSettings,
        started: float,
        on_progress: ProgressCallback | None,
        cancel: CancelCheck | None,
    ) -> None:
        self.net = network
        self.s = settings
        self.device = network.device
        self.precision = effective_precision(settings.precision, self.device)
        self.started = started
        self.on_progress = on_progress
        self.cancel = cancel
        # Noise comes from a CPU generator so the same seed gives the same start everywhere.
        self.generator = torch.Generator().manual_seed(settings.seed or 0)
        self.channels_last = self.device.type == "cuda"
        self.luminance_only = settings.preserve_colors == "luminance"
        self.layers = tuple(dict.fromkeys(settings.content_layers + settings.style_layers))
        self.step = 0
        self.total = settings.steps  # exact once the pyramid is known (execute)
        if self.device.type == "cuda":
            configure_cuda(self.precision)
            self.net.to(memory_format=torch.channels_last)

    # ----- images ↔ tensors -------------------------------------------------------------

    def _tensor(self, image: Image.Image, size: tuple[int, int] | None = None) -> torch.Tensor:
        if size is not None and image.size != size:
            image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        tensor = data.view(image.height, image.width, 3).permute(2, 0, 1).unsqueeze(0)
        return tensor.to(self.device, torch.float32).contiguous() / 255.0

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _features(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        if self.luminance_only:
            x = x.expand(-1, 3, -1, -1)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.precision == "bf16"
            else contextlib.nullcontext()
        )
        with autocast:
            return self.net(self._layout(x), layers, self.s.pooling)

    # ----- the job ------------------------------------------------------------------------

    def execute(self, content: Image.Image, styles: list[Image.Image]) -> Image.Image:
        s = self.s
        final = scaled_size(*content.size, s.size)
        if min(final) < MIN_SIDE:
            raise ImageError(
                f"This photo is too long and thin: at {s.size} px its short side would be "
                f"{min(final)} px, and it needs at least {MIN_SIDE}. Crop it, or ask for a "
                "larger size."
            )
        # Coarse scales too narrow for the network are skipped.
        sizes = [
            size
            for size in pyramid_sizes(s.size, s.min_scale, s.coarse_to_fine)
            if min(scaled_size(*content.size, size)) >= MIN_SIDE
        ]
        steps = split_steps(s.steps, len(sizes))
        sizes = sizes[len(sizes) - len(steps) :]
        self.total = sum(steps)
        weights = list(s.style_weights or [1.0] * len(styles))
        x: torch.Tensor | None = None
        content_rgb: torch.Tensor | None = None
        for scale, (longest, n_steps) in enumerate(zip(sizes, steps)):
            size = scaled_size(*content.size, longest)
            content_rgb = self._tensor(content, size)
            content_t = colors.luminance(content_rgb) if self.luminance_only else content_rgb
            style_ts = [self._style_tensor(style, longest, content_rgb) for style in styles]
            targets = self._targets(content_t, style_ts, weights)
            if x is None:
                x = self._initial(content_t, style_ts[0])
            else:
                x = F.interpolate(x, size=content_t.shape[-2:], mode="bicubic", align_corners=False)
                x = x.clamp(0, 1)
            del style_ts
            x = self._optimise(x, targets, n_steps, scale, len(sizes), content_rgb)
        assert x is not None and content_rgb is not None
        return self._to_image(x, content_rgb)

    def _style_tensor(
        self, style: Image.Image, longest: int, content_rgb: torch.Tensor
    ) -> torch.Tensor:
        side = _style_side(longest, self.s.style_scale)
        tensor = self._tensor(style, at_least_min_side(*style.size, side))
        if self.s.preserve_colors == "histogram":
            tensor = colors.match_histogram(tensor, content_rgb)
        if self.luminance_only:
            tensor = colors.match_luminance(colors.luminance(tensor), colors.luminance(content_rgb))
        return tensor

    @torch.no_grad()
    def _targets(
        self, content: torch.Tensor, styles: list[torch.Tensor], weights: list[float]
    ) -> _Targets:
        content_feats = self._features(content, self.s.content_layers)
        content_targets = {k: _with_norm(v.detach().float()) for k, v in content_feats.items()}
        # A style with weight 0 is never even run through the network.
        live = [(style, weight) for style, weight in zip(styles, weights) if weight > 0]
        grams = []
        for style, _ in live:
            feats = self._features(style, self.s.style_layers)
            grams.append({k: losses.gram_matrix(v) for k, v in feats.items()})
        live_weights = [weight for _, weight in live]
        style_targets = {
            layer: _with_norm(losses.blend_grams([g[layer] for g in grams], live_weights))
            for layer in self.s.style_layers
        }
        return _Targets(content_targets, style_targets)

    def _initial(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if self.s.init == "content":
            return content.clone()
        if self.s.init == "style":
            return F.interpolate(
                style, size=content.shape[-2:], mode="bilinear", align_corners=False
            )
        noise = torch.randn(content.shape, generator=self.generator) * 0.15 + 0.5
        return noise.clamp(0, 1).to(self.device)

    def _losses(
        self, x: torch.Tensor, targets: _Targets
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s = self.s
        feats = self._features(x, self.layers)
        content = torch.stack(
            [losses.content_loss(feats[k], *t) for k, t in targets.content.items()]
        ).sum() * (s.content_weight / len(targets.content))
        style = torch.stack(
            [losses.style_loss(feats[k], *t) for k, t in targets.style.items()]
        ).sum() * (s.style_weight * s.strength / len(targets.style))
        tv = losses.total_variation(x) * s.tv_weight
        return content, style, tv

    def _optimise(
        self,
        x: torch.Tensor,
        targets: _Targets,
        n_steps: int,
        scale: int,
        scales: int,
        content_rgb: torch.Tensor,
    ) -> torch.Tensor:
        # A plain contiguous tensor, so the optimiser can treat it as one flat vector.
        x = x.detach().contiguous().clone().requires_grad_(True)
        if self.s.optimizer == "lbfgs":
            lbfgs = LBFGS(x, history=self.s.lbfgs_history, bounds=(0.0, 1.0))
        else:
            # The fused kernel does the whole update in one launch on CUDA.
            adam = torch.optim.Adam([x], lr=self.s.learning_rate, fused=x.is_cuda)
        for _ in range(n_steps):
            if self.cancel is not None and self.cancel():
                raise Cancelled()
            content, style, tv = self._losses(x, targets)
            total = content + style + tv
            (grad,) = torch.autograd.grad(total, x)
            with torch.no_grad():
                if self.s.optimizer == "lbfgs":
                    lbfgs.step(grad)  # keeps x in [0, 1] itself
                else:
                    x.grad = grad
                    adam.step()
                    x.clamp_(0, 1)
            self.step += 1
            if self.on_progress is not None:
                self._report(x, (content, style, tv, total), scale, scales, content_rgb)
        return x.detach()

    def _report(
        self,
        x: torch.Tensor,
        parts: tuple[torch.Tensor, ...],
        scale: int,
        scales: int,
        content_rgb: torch.Tensor,
    ) -> None:
        parts = tuple(p.detach() for p in parts)

        def read_losses() -> Losses:
            # One host sync for all four numbers, paid only by a caller that reads them.
            return Losses(*torch.stack([p.float() for p in parts]).tolist())

        preview = None
        every = self.s.preview_every
        if every and (self.step % every == 0 or self.step == self.total):
            preview = self._preview(x, content_rgb, self.s.preview_size)
        assert self.on_progress is not None
        self.on_progress(
            Progress(
                step=self.step,
                total=self.total,
                scale=scale,
                scales=scales,
                size=(x.shape[-1], x.shape[-2]),
                elapsed=time.perf_counter() - self.started,
                read_losses=read_losses,
                preview=preview,
                render_preview=lambda side: self._preview(x, content_rgb, side),
            )
        )

    def _preview(self, x: torch.Tensor, content_rgb: torch.Tensor, side: int) -> Image.Image:
        image = self._to_image(x.detach(), content_rgb)
        image.thumbnail((side, side), Image.Resampling.BILINEAR)
        return image

    def _to_image(self, x: torch.Tensor, content_rgb: torch.Tensor) -> Image.Image:
        if self.luminance_only:
            x = colors.combine_luminance(x.float(), content_rgb)
        pixels = (x[0].float().clamp(0, 1) * 255).round().to(torch.uint8)
        array = pixels.permute(1, 2, 0).contiguous().cpu().numpy()
        return Image.fromarray(array, "RGB")


def _with_norm(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return target, losses.squared_norm(target)
