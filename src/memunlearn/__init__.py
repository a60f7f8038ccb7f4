"""memunlearn: memorization-aware machine unlearning for PyTorch classifiers.

The common job in one call::

    from memunlearn import load_dataset, make_forget_set, build_model, train, unlearn, evaluate
    data = load_dataset("digits")
    forget_set = make_forget_set("iid:0.1", data, seed=0)
"""

__version__ = "0.1.0"

from .data import Dataset, Examples, load_dataset  # noqa: E402
from .evaluation import compare_to_oracle, evaluate, tow, tow_mia  # noqa: E402
from .experiment import RunConfig, run_experiment  # noqa: E402
from .forget import ForgetSet, make_forget_set  # noqa: E402
from .methods import available_methods, unlearn  # noqa: E402
from .models import build_model  # noqa: E402
from .training import TrainConfig, train  # noqa: E402

__all__ = [
    "Dataset", "Examples", "ForgetSet", "RunConfig", "TrainConfig", "available_methods", "build_model",
    "compare_to_oracle", "evaluate", "load_dataset", "make_forget_set", "run_experiment", "tow", "tow_mia",
    "train", "unlearn",
]
