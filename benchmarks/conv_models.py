"""Candidate conv models for the Fashion-MNIST conv-recipe search (benchmarks/conv_recipe.py), registered on import.

``cnn3``: three conv blocks (conv 3x3 + BatchNorm + ReLU), a 2x2 max-pool after each of the
first two, global average pooling and a linear ``classifier``. ``cnn3f``: the same body with the
last block's feature map flattened into the ``classifier`` instead of averaged (a per-location
linear head: 4w * (size/4)^2 inputs), which memorizes far faster at the same conv cost. Widths ``w, 2w, 4w``. Unlike
``cnn`` (two convs at full resolution) it pools after one conv per resolution, so at the same
cost per example it has more channels (more parameters to memorize with): width 32 on 28x28
inputs is about 93k parameters for ~7.4M multiply-adds per example, against ``cnn`` width 16's
~35k parameters for ~5.5M.
"""

from __future__ import annotations

import torch
from torch import nn

from memunlearn.models import MODELS, register_model, reset_submodules


class ThreeBlockCNN(nn.Module):
    """conv-BN-ReLU-pool, conv-BN-ReLU-pool, conv-BN-ReLU, global average pool (or flatten), Linear."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, image_size: int = 28,
                 flatten_head: bool = False):
        super().__init__()
        w = width
        side = -(-image_size // 4)  # two ceil-mode 2x2 pools: ceil(ceil(size / 2) / 2) = ceil(size / 4)

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.body = nn.Sequential(
            *block(in_channels, w), nn.MaxPool2d(2, ceil_mode=True),
            *block(w, 2 * w), nn.MaxPool2d(2, ceil_mode=True),
            *block(2 * w, 4 * w), *([] if flatten_head else [nn.AdaptiveAvgPool2d(1)]), nn.Flatten(),
        )
        self.classifier = nn.Linear(4 * w * (side * side if flatten_head else 1), num_classes)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """PyTorch's default init of every layer."""
        reset_submodules(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


if "cnn3" not in MODELS.names():
    register_model("cnn3", lambda in_channels, num_classes, width, image_size: ThreeBlockCNN(
        in_channels, num_classes, width, image_size), default_width=32)
if "cnn3f" not in MODELS.names():
    register_model("cnn3f", lambda in_channels, num_classes, width, image_size: ThreeBlockCNN(
        in_channels, num_classes, width, image_size, flatten_head=True), default_width=32)
