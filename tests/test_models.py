import pytest
import torch

from memunlearn.memorization import infer_architecture
from memunlearn.models import available_models, build_model, classifier_parameter_names


@pytest.mark.parametrize("name", ["cnn", "mlp", "resnet18", "vit"])
def test_every_model_maps_images_to_logits_and_names_its_classifier(name):
    assert name in available_models()
    model = build_model(name, in_channels=1, num_classes=7, width=8, image_size=8, seed=0).eval()
    x = torch.randn(3, 1, 8, 8)
    assert model(x).shape == (3, 7)
    assert model.features(x).shape[0] == 3
    head = ["norm.weight", "norm.bias"] if name == "vit" else []  # the ViT's head includes its final LayerNorm
    assert classifier_parameter_names(model) == head + ["classifier.weight", "classifier.bias"]
    assert infer_architecture(model) == (name, 8)


def test_same_seed_same_weights_for_the_mlp():
    a = build_model("mlp", 1, 10, width=16, image_size=8, seed=3)
    b = build_model("mlp", 1, 10, width=16, image_size=8, seed=3)
    c = build_model("mlp", 1, 10, width=16, image_size=8, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
