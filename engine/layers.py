"""VGG19's layers, named as Simonyan & Zisserman and Gatys et al. name them.

``VGG19_LAYERS[i]`` is the name of ``torchvision.models.vgg19().features[i]``. The table is
written out rather than generated so that a reader can check it against the paper, and a
test checks it against torchvision's module types.
"""

from __future__ import annotations

VGG19_LAYERS: tuple[str, ...] = (
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4", "pool5",
)  # fmt: skip

LAYER_INDEX: dict[str, int] = {name: i for i, name in enumerate(VGG19_LAYERS)}

# The deepest layer any run may use. Style transfer never needs the fifth block's later
# layers, and stopping here saves the largest share of memory at high resolution.
DEEPEST_ALLOWED = "relu5_1"

# Selectable layers: every conv and relu up to DEEPEST_ALLOWED.
SELECTABLE_LAYERS: tuple[str, ...] = tuple(
    name for name in VGG19_LAYERS[: LAYER_INDEX[DEEPEST_ALLOWED] + 1] if not name.startswith("pool")
)
