"""Defaults never diverge (SPEC §3): every registered method, at its default settings, finishes
without a NaN loss and with finite weights, on the model and input shape of every shipped recipe.

Each case fits a model (the recipe's architecture, learning rate and batch size) to generated data,
then runs every method at its defaults. The forget set is most of the data: gradient ascent diverges
after enough ascent steps (on Fashion-MNIST's 2x1024 MLP, NegGrad went NaN at step 36 and SCRUB at
step 44 with the 1,000-example forget set of a 10k subset), and a large forget set gives as many
steps on a few hundred examples, which keeps the file fast. Before the ascent terms were guarded,
the MLP cases failed (NegGrad NaN on random labels, SCRUB NaN on prototypes).
"""

import pytest
import torch

from memunlearn import Examples, build_model, train, unlearn
from memunlearn.errors import DivergedError
from memunlearn.methods import available_methods
from memunlearn.training import TrainConfig, recipe_for

# dataset → (input shape, classes, width override for speed or None = the recipe's own width)
SHAPES = {
    "digits": ((1, 8, 8), 10, None),
    "fashion-mnist": ((1, 28, 28), 10, None),  # the real 2x1024 MLP, where the failure was seen
    "mnist": ((1, 28, 28), 10, None),
    "cifar10": ((3, 32, 32), 10, 4),  # ResNet-18 at width 4: the recipe's architecture, 1/256 of the cost
    "cifar100": ((3, 32, 32), 100, 4),
    "svhn": ((3, 32, 32), 10, 16),  # the ViT at width 16
}
# (dataset, signal): inputs are signal·(class prototype) + noise. On the MLP, 0.5 made SCRUB's
# max-step go NaN and pure memorization (random labels, 0.0) NegGrad, before the guard.
CASES = [("fashion-mnist", 0.5), ("fashion-mnist", 0.0)] + [(d, 3.0) for d in SHAPES if d != "fashion-mnist"]


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def generated(shape, classes, signal, n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(classes, *shape, generator=generator)
    labels = torch.arange(n) % classes
    inputs = signal * prototypes[labels] + torch.randn(n, *shape, generator=generator)
    return Examples(inputs, labels)


@pytest.mark.parametrize("dataset,signal", CASES)
def test_every_method_at_its_defaults_stays_finite(dataset, signal):
    shape, classes, width = SHAPES[dataset]
    recipe = recipe_for(dataset)
    mlp = recipe.model == "mlp"  # cheap per example: many ascent steps; the others get fewer examples
    n, forget_size = (1100, 1000) if mlp else (80, 64)
    data = generated(shape, classes, signal, n)
    model = build_model(recipe.model, shape[0], classes, width or recipe.width, shape[1], seed=0)
    # the recipe's optimizer; on 80 examples, batches of 16 so that 12 epochs are enough steps to fit them
    config = TrainConfig(epochs=10 if mlp else 12, lr=recipe.train.lr,
                         batch_size=recipe.train.batch_size if mlp else 16, momentum=recipe.train.momentum, weight_decay=recipe.train.weight_decay)
    model = train(model, data, config, "cpu", record_dynamics=False).model
    with torch.no_grad():
        fitted = float((model(data.x).argmax(1) == data.y).float().mean())
    assert fitted > 0.9, f"{dataset}: the original fits only {fitted:.2f} of its training data"
    forget, retain = data.subset(range(forget_size)), data.subset(range(forget_size, n))
    failures = []
    for method in available_methods():
        try:
            result = unlearn(method, model, forget, retain, device="cpu")
        except DivergedError as error:
            failures.append(f"{method}: {error}")
            continue
        state = result.model.state_dict()
        if not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
            failures.append(f"{method}: non-finite weights")
    assert not failures, f"{dataset} (signal {signal}): " + "; ".join(failures)


def test_an_ascent_step_moves_the_weights_at_most_lr_times_the_clipping_norm():
    data = generated((1, 8, 8), 10, 1.0, 32)
    model = build_model("mlp", 1, 10, 16, 8, seed=0)
    result = unlearn("neggrad", model, data, data, epochs=1, batch_size=32, lr=1.0, momentum=0.0, weight_decay=0.0,
                     max_grad_norm=0.25, device="cpu")
    with torch.no_grad():
        moved = torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(result.model.parameters(), model.parameters())))
    assert result.cost.steps == 1 and float(moved) == pytest.approx(0.25, rel=1e-4)
