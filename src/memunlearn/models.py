"""Model definitions: CIFAR-style ResNet-18, a small CNN and a small ViT.

Every model names its final linear layer ``classifier`` so that methods which treat the
classifier specially (DEL trains it always) find it the same way in every architecture.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .errors import unknown_name

CLASSIFIER = "classifier"


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18: 3×3 stride-1 stem, no max-pool; ``width=64`` is the papers' model."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, in_planes = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            planes = width * 2**i
            layers.append(nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_planes, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return torch.flatten(self.pool(out), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class SmallCNN(nn.Module):
    """Three conv blocks and a linear classifier; fits digits and Fashion-MNIST quickly on a CPU."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32):
        super().__init__()
        w = width

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())

        self.body = nn.Sequential(
            block(in_channels, w), block(w, w), nn.MaxPool2d(2, ceil_mode=True),
            block(w, 2 * w), block(2 * w, 2 * w), nn.MaxPool2d(2, ceil_mode=True),
            block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(4 * w, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


class MLP(nn.Module):
    """Two hidden ReLU layers of ``width`` units. It memorizes a 10k Fashion-MNIST subset in about
    half a minute on a CPU, which makes pools of many models affordable without a GPU."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 512, image_size: int = 28):
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(in_channels * image_size * image_size, width), nn.ReLU(),
            nn.Linear(width, width), nn.ReLU(),
        )
        self.classifier = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


class SmallViT(nn.Module):
    """A small pre-norm vision transformer (the DEL paper's SVHN setting, scaled to small inputs)."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width: int = 128,
        image_size: int = 32,
        patch_size: int | None = None,
        depth: int = 4,
        heads: int = 4,
    ):
        super().__init__()
        patch = patch_size or max(1, image_size // 8)
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not a multiple of patch size {patch}")
        tokens = (image_size // patch) ** 2
        self.patch_embed = nn.Conv2d(in_channels, width, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.classifier = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1) + self.pos_embed
        return self.norm(self.encoder(tokens))[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


_MODELS: dict[str, Callable[..., nn.Module]] = {}
DEFAULT_WIDTHS = {"resnet18": 64, "cnn": 32, "vit": 128, "mlp": 512}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    """Register a model factory ``factory(in_channels, num_classes, width, image_size) -> nn.Module``."""
    _MODELS[name] = factory


def available_models() -> list[str]:
    return sorted(_MODELS)


register_model("resnet18", lambda in_channels, num_classes, width, image_size: ResNet18(in_channels, num_classes, width))
register_model("cnn", lambda in_channels, num_classes, width, image_size: SmallCNN(in_channels, num_classes, width))
register_model("mlp", lambda in_channels, num_classes, width, image_size: MLP(in_channels, num_classes, width, image_size))
register_model(
    "vit", lambda in_channels, num_classes, width, image_size: SmallViT(in_channels, num_classes, width, image_size)
)


def build_model(
    name: str,
    in_channels: int = 3,
    num_classes: int = 10,
    width: int | None = None,
    image_size: int = 32,
    seed: int | None = None,
) -> nn.Module:
    """Build a freshly initialised model by name.

    Args:
        name: one of :func:`available_models` (``resnet18``, ``cnn``, ``vit``, ``mlp``).
        in_channels: input channels (1 for digits/MNIST, 3 for CIFAR/SVHN).
        num_classes: number of output classes.
        width: channel width (ResNet-18: 64 is the papers' model); ``None`` = the model's default.
        image_size: input height = width (used by the ViT's patch grid).
        seed: if given, the initialisation is drawn from this seed (same seed → same weights).

    Returns:
        The model, on the CPU, in training mode; its last layer is named ``classifier``.

    Raises:
        ConfigError: unknown model name.

    Example:
        >>> model = build_model("cnn", in_channels=1, num_classes=10, image_size=8, seed=0)
        >>> model(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    if name not in _MODELS:
        raise unknown_name("model", name, _MODELS)
    width = width or DEFAULT_WIDTHS.get(name, 64)
    if seed is None:
        return _MODELS[name](in_channels, num_classes, width, image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _MODELS[name](in_channels, num_classes, width, image_size)


def classifier_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters of the model's final ``classifier`` layer."""
    return [name for name, _ in model.named_parameters() if name.split(".")[0] == CLASSIFIER]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
