"""Model definitions: CIFAR-style ResNet-18, a small CNN, an MLP and a small ViT.

Every model names its final linear layer ``classifier`` so that methods which treat the
classifier specially (DEL trains it always) find it the same way in every architecture; a
model whose head has more than one layer lists them in ``head_layers`` (the ViT: its final
LayerNorm and the classifier). :func:`classifier_layers` finds the head of any other
``nn.Module`` too.

Every model also has ``init_weights()``: its constructor ends with it, and
``methods.retrain.fresh_initialisation`` (the oracle's and DEL's reset) calls it, so a reset
draws from exactly the distribution a newly built model has.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import nn

from .errors import ConfigError
from .registry import Registry

CLASSIFIER = "classifier"


def reset_submodules(module: nn.Module) -> set[int]:
    """Call every submodule's own ``reset_parameters()`` (PyTorch's default init), in module order.

    Returns:
        The ids of the parameters that were reset (those of modules that have such a method).
    """
    covered: set[int] = set()
    for sub in module.modules():
        reset = getattr(sub, "reset_parameters", None)
        if sub is not module and callable(reset):
            reset()
            covered.update(id(p) for p in sub.parameters(recurse=False))
    return covered


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
    """CIFAR-style ResNet-18: 3×3 stride-1 stem, no max-pool; ``width=64`` is the papers' model.

    Initialised as the official DEL code's model (reihaneh-torkzadehmahani/DEL-Unlearning@b1f732c,
    unlearning_models.py:100-106): torchvision's ResNet-18 init (convolutions kaiming-normal
    (fan_out, ReLU), BatchNorm γ = 1 and β = 0, the Linear classifier PyTorch's default), except
    the 3×3 stem convolution ``conv1``: the official code swaps torchvision's 7×7 stem for a new
    ``nn.Conv2d`` AFTER torchvision's init, so the stem has PyTorch's default Conv2d init
    (kaiming-uniform, a = √5), in the original, the oracle and DEL's reset alike. The stem's
    BatchNorm ``bn1`` is torchvision's (γ = 1, β = 0). ``stem_init="kaiming-normal"`` gives the
    stem the same init as the other convolutions (this library's earlier behaviour).
    """

    STEM_INITS = ("official", "kaiming-normal")

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 64, stem_init: str = "official"):
        super().__init__()
        if stem_init not in self.STEM_INITS:
            raise ConfigError(f"unknown ResNet-18 stem init {stem_init!r}; choose one of {', '.join(self.STEM_INITS)}")
        self.stem_init = stem_init
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
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.Linear)):
                module.reset_parameters()  # BatchNorm: γ = 1, β = 0 and fresh running statistics
        if self.stem_init == "official":
            # The official stem is a fresh nn.Conv2d built after torchvision's init loop
            # (unlearning_models.py:105): PyTorch's default init, drawn after the other layers.
            self.conv1.reset_parameters()

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
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """PyTorch's default init of every layer."""
        reset_submodules(self)

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
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """PyTorch's default init of every layer."""
        reset_submodules(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


class SmallViT(nn.Module):
    """A small pre-norm vision transformer (the DEL paper's SVHN setting, scaled to small inputs).

    Its head is the final LayerNorm plus the linear classifier (``head_layers``), as in the
    official DEL code, which trains both in full.
    """

    head_layers = ("norm", CLASSIFIER)

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
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, width))
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.classifier = nn.Linear(width, num_classes)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Each encoder layer drawn independently (``nn.TransformerEncoder`` clones ONE layer, so
        without this all layers would start identical); within a layer PyTorch's defaults:
        attention in-projection xavier-uniform with zero biases (out-projection bias included),
        other Linear layers and the patch embedding kaiming-uniform, LayerNorms 1 and 0. Class
        token 0, position embedding N(0, 0.02²) (the usual ViT init)."""
        reset_submodules(self)
        for module in self.modules():
            if isinstance(module, nn.MultiheadAttention):
                module._reset_parameters()  # after its out_proj's own reset: zeroes that bias again
        nn.init.zeros_(self.cls_token)
        nn.init.normal_(self.pos_embed, std=0.02)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1) + self.pos_embed
        return self.norm(self.encoder(tokens))[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
# Bumped when a model's initialisation changes, so that cached models trained with the old one are
# not reused (part of the cache key of originals and oracles). ResNet-18 2: the official stem init.
INIT_VERSIONS = {"resnet18": 2}


def register_model(name: str, factory: Callable[..., nn.Module], default_width: int = 64) -> None:
    """Register a model factory ``factory(in_channels, num_classes, width, image_size) -> nn.Module``.

    Raises:
        ConfigError: ``name`` is already registered.
    """
    MODELS.register(name, factory, default_width=default_width)


def available_models() -> list[str]:
    return sorted(MODELS.names())


def default_width(name: str) -> int:
    return MODELS.entry(name).metadata["default_width"]


register_model("resnet18", lambda in_channels, num_classes, width, image_size:
               ResNet18(in_channels, num_classes, width), default_width=64)
register_model("cnn", lambda in_channels, num_classes, width, image_size:
               SmallCNN(in_channels, num_classes, width), default_width=32)
register_model("mlp", lambda in_channels, num_classes, width, image_size:
               MLP(in_channels, num_classes, width, image_size), default_width=512)
register_model("vit", lambda in_channels, num_classes, width, image_size:
               SmallViT(in_channels, num_classes, width, image_size), default_width=128)


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
    factory = MODELS.get(name)
    width = width or default_width(name)
    if seed is None:
        return factory(in_channels, num_classes, width, image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory(in_channels, num_classes, width, image_size)


def classifier_layers(model: nn.Module, layer: str | None = None, num_classes: int | None = None) -> tuple[str, ...]:
    """The submodule names of the model's head: the layers DEL always trains.

    In this order: ``layer`` if given; the model's ``head_layers`` (the ViT: its final LayerNorm
    and classifier); a submodule named ``classifier``; else, for any other model, the last
    ``nn.Linear`` in module order whose ``out_features`` is ``num_classes`` (when given), or the
    last ``nn.Linear`` at all. A guessed layer is announced with a warning.

    Args:
        model: the network.
        layer: a submodule name the user chose (e.g. ``"fc"``); "" or None = find it.
        num_classes: the model's output width, to prefer the Linear layer that produces the logits.

    Returns:
        Submodule names (empty if the model has no Linear layer to guess).

    Raises:
        ConfigError: ``layer`` is not a submodule with parameters.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     classifier_layers(net, num_classes=3)
        ('3',)
    """
    modules = dict(model.named_modules())
    if layer:
        if layer not in modules or not any(True for _ in modules[layer].parameters()):
            candidates = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
            raise ConfigError(f"the model has no layer {layer!r} with parameters; its Linear layers: {candidates}")
        return (layer,)
    head = getattr(model, "head_layers", None)
    if head:
        return tuple(head)
    if isinstance(modules.get(CLASSIFIER), nn.Module):
        return (CLASSIFIER,)
    linears = [(n, m) for n, m in modules.items() if isinstance(m, nn.Linear)]
    if not linears:
        return ()
    matching = [n for n, m in linears if num_classes is not None and m.out_features == num_classes]
    chosen = matching[-1] if matching else linears[-1][0]
    warnings.warn(
        f"{type(model).__name__} has no layer named {CLASSIFIER!r}: taking {chosen!r} as its classifier "
        f"(the last Linear layer{' with ' + str(num_classes) + ' outputs' if matching else ''}); "
        "name another with classifier_layer", stacklevel=2,
    )
    return (chosen,)


def classifier_parameter_names(model: nn.Module, layer: str | None = None, num_classes: int | None = None) -> list[str]:
    """Names of the parameters of the model's head (see :func:`classifier_layers`)."""
    prefixes = tuple(name + "." for name in classifier_layers(model, layer, num_classes))
    return [name for name, _ in model.named_parameters() if name.startswith(prefixes)]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
