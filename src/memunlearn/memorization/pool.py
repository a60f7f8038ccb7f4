"""The model pool: K models, each trained on a random fraction r of the training set (SPEC §4).

Per model the pool keeps its subset mask and its logits on the train and test sets (float16), so
one pool serves the exact memorization estimator, LiRA-style attacks and retrain oracles for any
forget set a model happened to exclude.

Layout of a pool folder (default ``$MEMUNLEARN_CACHE/pools/<dataset>-<key>``)::

    pool.json                 what produced the pool (dataset fingerprint, model, width, recipe, r, seed)
    member-00000.safetensors  mask [n] uint8, train_logits [n, C] f16, test_logits [m, C] f16
    member-00000.weights.safetensors   (only with keep_weights) the member's trained state dict
    member-00001.safetensors  ...

With ``keep_weights`` (``--keep-weights``; off by default, so the pool's size stays a choice) each
member also stores its trained weights. The weights file carries the SHA-256 of its tensors and
the member file records that same checksum (``weights_sha256``): the weights are addressed by
their content, and a weights file that does not hash to what its member recorded is never loaded.
Privacy drivers that need a member's model (U-LiRA unlearns every member) load it from there
instead of retraining the member. Keeping weights does not change the pool's key: a pool built
without weights gains them by training the members again (same seeds, same results).

Member k depends only on (data, model, recipe, r, seed, threads, k): its subset and its
initialisation are drawn from ``(seed, k)``, and it trains with exactly ``threads`` torch threads
whatever the executor or the number of workers (float sums depend on the thread count). So the
key leaves K out: a pool of 64 grows into one of 100 by training members 64..99, and an
interrupted pool resumes where it stopped, with any number of workers. Each member file is
written atomically (temporary file + rename) as soon as its model finishes, with the SHA-256 of
its tensors; a file that is unreadable, damaged (checksum mismatch) or does not match the pool is
reported and trained again, never read back. A per-member lock lets two processes build one pool
together without training any member twice.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..checkpoints import artefact_key, cache_root
from ..data.core import Dataset, Examples
from ..errors import ConfigError, DamagedArtefactWarning
from ..io import FileLock, atomic_path, check_output_dir, sha256_of_tensors, write_json
from ..models import build_model
from ..training import TrainConfig, predict_logits, recipe_for, train
from .estimator import MemorizationEstimate, feldman_zhang, split_half_reliability
from .executors import check_executor, get_executor

POOL_FORMAT = 2  # 2: members carry a checksum and train with a fixed thread count
CHECKSUM_KEY = "memunlearn_sha256"
DEFAULT_MEMBER_THREADS = 1
DEFAULT_POOL_SIZE = 100
DEFAULT_SUBSET_FRACTION = 0.7


@dataclass(frozen=True)
class PoolSpec:
    """What every pool member is: architecture, training recipe, subset fraction r, pool seed,
    and the torch threads each member trains with (results depend on it, so it is part of the key)."""

    model: str
    width: int
    train: TrainConfig
    subset_fraction: float = DEFAULT_SUBSET_FRACTION
    seed: int = 0
    threads: int = DEFAULT_MEMBER_THREADS
    keep_weights: bool = False  # not part of the key: the members are the same either way

    def __post_init__(self) -> None:
        if not 0 < self.subset_fraction < 1:
            raise ConfigError(f"the subset fraction r must be in (0, 1), got {self.subset_fraction}")
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ConfigError(f"pool members need at least 1 torch thread, got {self.threads!r}")

    def to_dict(self) -> dict[str, Any]:
        # The recipe's own seed is not used (each member draws its own from (seed, k)).
        return {"model": self.model, "width": self.width, "train": replace(self.train, seed=0).to_dict(),
                "subset_fraction": self.subset_fraction, "seed": self.seed, "threads": self.threads}

    def key(self, dataset: Dataset) -> str:
        return artefact_key(kind="model-pool", format=POOL_FORMAT, data=dataset.fingerprint, **self.to_dict())


def pool_spec_for(
    dataset: Dataset,
    model: str | None = None,
    width: int | None = None,
    train_config: TrainConfig | None = None,
    subset_fraction: float = DEFAULT_SUBSET_FRACTION,
    seed: int = 0,
    epochs: int | None = None,
    threads: int = DEFAULT_MEMBER_THREADS,
    keep_weights: bool = False,
) -> PoolSpec:
    """The pool spec for ``dataset``, filling what is not given from the dataset's recipe.

    Example:
        >>> from memunlearn import load_dataset  # doctest: +SKIP
        >>> pool_spec_for(load_dataset("digits"), epochs=10).model  # doctest: +SKIP
        'cnn'
    """
    recipe = recipe_for(dataset.name)
    config = train_config or recipe.train
    if epochs is not None:
        config = replace(config, epochs=epochs)
    return PoolSpec(model or recipe.model, width or recipe.width, config, subset_fraction, seed, threads, keep_weights)


def subset_indices(n: int, fraction: float, seed: int, index: int) -> np.ndarray:
    """The sorted training indices of pool member ``index``: round(fraction·n) drawn from (seed, index).

    Example:
        >>> subset_indices(10, 0.7, seed=0, index=3).shape
        (7,)
    """
    size = min(max(1, int(round(fraction * n))), n - 1) if n > 1 else n
    rng = np.random.default_rng([seed, index, 0x5EED])
    return np.sort(rng.choice(n, size=size, replace=False))


def member_seed(seed: int, index: int) -> int:
    """The training seed (initialisation and data order) of pool member ``index``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] % (2**31 - 1))


@dataclass(frozen=True)
class MemberTask:
    """Everything a worker needs to train pool member ``index`` (picklable; the data is shared)."""

    index: int
    pool_key: str
    model: str
    width: int
    in_channels: int
    num_classes: int
    image_size: int
    train: TrainConfig
    subset_fraction: float
    pool_seed: int
    device: str = "auto"
    threads: int = DEFAULT_MEMBER_THREADS
    keep_weights: bool = False


def dataset_arrays(dataset: Dataset) -> dict[str, np.ndarray]:
    """The tensors a worker needs, as numpy arrays (sent once per worker by the executor)."""
    return {
        "x_train": dataset.train.x.numpy(), "y_train": dataset.train.y.numpy(),
        "x_test": dataset.test.x.numpy(), "y_test": dataset.test.y.numpy(),
    }


def train_member(task: MemberTask, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Train pool member ``task.index`` on its subset; return its mask, logits and cost.

    Runs in a worker process (or Ray task): a module-level function of picklable arguments. It
    trains with exactly ``task.threads`` torch threads, so the result does not depend on how
    many workers share the CPU.
    """
    threads_before = torch.get_num_threads()
    torch.set_num_threads(task.threads)
    try:
        return _train_member(task, arrays)
    finally:
        torch.set_num_threads(threads_before)


def member_model(task: MemberTask, train_set: Examples) -> nn.Module:
    """Train member ``task.index``'s model on its subset of ``train_set`` (standard strides): the one
    place that says how a member is trained, so :mod:`memunlearn.privacy` can reproduce a member
    exactly when the pool stores no weights. The caller sets the thread count."""
    subset = subset_indices(len(train_set), task.subset_fraction, task.pool_seed, task.index)
    seed = member_seed(task.pool_seed, task.index)
    model = build_model(task.model, task.in_channels, task.num_classes, width=task.width,
                        image_size=task.image_size, seed=seed)
    train(model, train_set.subset(subset), replace(task.train, seed=seed), task.device, record_dynamics=False)
    return model


def reproduce_member(info: dict[str, Any], dataset: Dataset, index: int, device: str = "auto") -> nn.Module:
    """Member ``index`` of the pool described by ``info`` (``ModelPool.info``), trained again exactly
    as the pool trained it: same subset, seed, recipe, thread count and data layout.

    Raises:
        KeyError, TypeError: ``info`` does not describe the pool's model and recipe.
    """
    data = info["dataset"]
    train_config = info["train"] if isinstance(info["train"], TrainConfig) else TrainConfig(**info["train"])
    task = MemberTask(index, info["key"], info["model"], info["width"], data["in_channels"], data["num_classes"],
                      data["image_size"], train_config, info["subset_fraction"], info["seed"], device,
                      info.get("threads", DEFAULT_MEMBER_THREADS))
    arrays = dataset_arrays(dataset)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(task.threads)
    try:
        return member_model(task, Examples(_standard(arrays["x_train"]), _standard(arrays["y_train"]))).eval()
    finally:
        torch.set_num_threads(threads_before)


def _train_member(task: MemberTask, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    start = time.perf_counter()
    train_set = Examples(_standard(arrays["x_train"]), _standard(arrays["y_train"]))
    test_set = Examples(_standard(arrays["x_test"]), _standard(arrays["y_test"]))
    n = len(train_set)
    subset = subset_indices(n, task.subset_fraction, task.pool_seed, task.index)
    model = member_model(task, train_set)
    train_logits = predict_logits(model, train_set, task.device)
    test_logits = predict_logits(model, test_set, task.device)
    mask = np.zeros(n, dtype=bool)
    mask[subset] = True
    correct = (train_logits.argmax(1) == train_set.y).numpy()
    state = ({name: tensor.detach().cpu().clone().numpy() for name, tensor in model.state_dict().items()}
             if task.keep_weights else None)
    return {
        "index": task.index,
        **({"state": state} if state is not None else {}),
        "mask": mask,
        "train_logits": train_logits.to(torch.float16).numpy(),
        "test_logits": test_logits.to(torch.float16).numpy(),
        "wall_time": time.perf_counter() - start,
        "subset_accuracy": float(correct[mask].mean()),
        "held_out_accuracy": float(correct[~mask].mean()) if (~mask).any() else float("nan"),
        "test_accuracy": float((test_logits.argmax(1) == test_set.y).float().mean()),
    }


def _standard(array: np.ndarray) -> torch.Tensor:
    """A copy with standard strides. The strides of size-1 dimensions survive ``torch.from_numpy``
    but not pickling, and an image tensor with one channel and strides (64, 1, 8, 1) counts as
    channels_last, which picks other conv kernels: without this, a member trained in a worker
    process (pickled arrays) differs in the last bits from one trained in this process."""
    return torch.from_numpy(array).clone(memory_format=torch.contiguous_format)


def member_path(pool_dir: Path, index: int) -> Path:
    return Path(pool_dir) / f"member-{index:05d}.safetensors"


def weights_path(pool_dir: Path, index: int) -> Path:
    return Path(pool_dir) / f"member-{index:05d}.weights.safetensors"


def write_member(pool_dir: Path, pool_key: str, result: dict[str, Any]) -> Path:
    """Save one finished member atomically (a reader never sees a half-written file); with a
    ``state`` (keep_weights), its weights first, then the member file recording their checksum."""
    path = member_path(pool_dir, result["index"])
    weights_sha = None
    if result.get("state") is not None:
        state = {name: torch.tensor(np.asarray(value)) for name, value in result["state"].items()}
        weights_sha = sha256_of_tensors(state)
        with atomic_path(weights_path(pool_dir, result["index"])) as tmp:
            save_file(state, str(tmp), metadata={"memunlearn": json.dumps({"pool_key": pool_key, "index": result["index"]}),
                                                 CHECKSUM_KEY: weights_sha})
    tensors = {
        # copies: arrays that come back from Ray are read-only views of its object store
        "mask": torch.tensor(np.asarray(result["mask"], dtype=np.uint8)),
        "train_logits": torch.tensor(np.asarray(result["train_logits"])),
        "test_logits": torch.tensor(np.asarray(result["test_logits"])),
    }
    metadata = {k: v for k, v in result.items() if k not in tensors and k != "state"}
    metadata["pool_key"] = pool_key
    if weights_sha is not None:
        metadata["weights_sha256"] = weights_sha
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"memunlearn": json.dumps(metadata),
                                               CHECKSUM_KEY: sha256_of_tensors(tensors)})
    return path


def read_member(path: Path, pool_key: str, index: int, n_train: int, n_test: int, num_classes: int) -> dict[str, Any] | None:
    """One member file, or None when it is missing, corrupt, damaged (checksum mismatch; reported
    with a :class:`~memunlearn.errors.DamagedArtefactWarning`), without a checksum, or not this
    pool's member ``index``."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            metadata = json.loads(header.get("memunlearn", "{}"))
            tensors = {name: handle.get_tensor(name) for name in ("mask", "train_logits", "test_logits")}
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError):
        warnings.warn(f"pool member {path} is unreadable or truncated; training it again", DamagedArtefactWarning,
                      stacklevel=2)
        return None
    if metadata.get("pool_key") != pool_key or metadata.get("index") != index:
        return None
    if header.get(CHECKSUM_KEY) != sha256_of_tensors(tensors):
        warnings.warn(f"pool member {path} is damaged (its tensors do not match the checksum stored with them); "
                      "training it again", DamagedArtefactWarning, stacklevel=2)
        return None
    if (tuple(tensors["mask"].shape) != (n_train,) or tuple(tensors["train_logits"].shape) != (n_train, num_classes)
            or tuple(tensors["test_logits"].shape) != (n_test, num_classes)):
        return None
    return {**metadata, "mask": tensors["mask"].numpy().astype(bool),
            "train_logits": tensors["train_logits"].numpy(), "test_logits": tensors["test_logits"].numpy()}


def read_member_weights(pool_dir: Path, index: int, expected_sha: str | None) -> dict[str, torch.Tensor] | None:
    """Member ``index``'s stored state dict, or None when absent, unreadable, or not the content
    its member file recorded (``expected_sha``; a mismatch is reported as damaged)."""
    path = weights_path(pool_dir, index)
    if not expected_sha or not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            state = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError):
        warnings.warn(f"pool weights {path} are unreadable or truncated; training the member again",
                      DamagedArtefactWarning, stacklevel=2)
        return None
    if header.get(CHECKSUM_KEY) != expected_sha or sha256_of_tensors(state) != expected_sha:
        warnings.warn(f"pool weights {path} are damaged or belong to another run (their checksum is not the one "
                      "their member recorded); training the member again", DamagedArtefactWarning, stacklevel=2)
        return None
    return state


@dataclass
class ModelPool:
    """A loaded pool: per member its subset mask and float16 logits on train and test.

    Attributes:
        directory: the pool folder.
        info: the contents of pool.json (what produced it).
        masks: [K, n] bool, ``masks[k, i]`` = example i was in member k's training subset.
        train_logits: [K, n, C] float16.
        test_logits: [K, m, C] float16.
        members: per-member metadata (wall time, accuracies).
        build: what the last :func:`build_pool` call did (trained, reused, wall time).
    """

    directory: Path
    info: dict[str, Any]
    masks: np.ndarray
    train_logits: np.ndarray
    test_logits: np.ndarray
    members: list[dict[str, Any]]
    build: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.masks)

    def has_weights(self, position: int) -> bool:
        """Whether member ``position`` (row of ``masks``) recorded stored weights."""
        return bool(self.members[position].get("weights_sha256"))

    @property
    def keeps_weights(self) -> bool:
        """Whether every member stores its weights."""
        return all(self.has_weights(k) for k in range(len(self)))

    def member_model(self, position: int, device: str = "cpu") -> nn.Module | None:
        """Member ``position``'s trained model from its stored weights (eval mode), or None when
        the pool keeps no weights for it. The weights are checked against their checksum."""
        member = self.members[position]
        index = int(member.get("index", position))
        state = read_member_weights(self.directory, index, member.get("weights_sha256"))
        if state is None:
            return None
        data = self.info["dataset"]
        model = build_model(self.info["model"], data["in_channels"], data["num_classes"], width=self.info["width"],
                            image_size=data["image_size"], seed=0)
        model.load_state_dict(state)
        from ..training import get_device

        return model.to(get_device(device)).eval()

    def correct(self, labels: torch.Tensor | np.ndarray) -> np.ndarray:
        """[K, n] bool: whether each member classifies each training example correctly."""
        labels = np.asarray(labels)
        return self.train_logits.argmax(axis=2) == labels[None, :]

    def estimate(self, labels: torch.Tensor | np.ndarray) -> MemorizationEstimate:
        """Feldman–Zhang exact scores of the training examples (see :func:`feldman_zhang`)."""
        return feldman_zhang(self.masks, self.correct(labels))

    def reliability(self, labels: torch.Tensor | np.ndarray) -> float:
        """Split-half reliability of the exact scores (see :func:`split_half_reliability`)."""
        return split_half_reliability(self.masks, self.correct(labels))

    @property
    def train_seconds(self) -> float:
        """Sum of the members' own wall times: the pool's compute cost, whatever the executor."""
        return float(sum(m.get("wall_time", 0.0) for m in self.members))


def default_pool_dir(dataset: Dataset, spec: PoolSpec, cache_dir: str | os.PathLike | None = None) -> Path:
    return cache_root(cache_dir) / "pools" / f"{dataset.name.replace('/', '_')}-{spec.key(dataset)}"


def _pool_info(dataset: Dataset, spec: PoolSpec) -> dict[str, Any]:
    channels, _, size = dataset.input_shape
    return {
        "format": POOL_FORMAT, "key": spec.key(dataset),
        "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint, "n_train": len(dataset.train),
                    "n_test": len(dataset.test), "num_classes": dataset.num_classes,
                    "in_channels": channels, "image_size": size},
        **spec.to_dict(),
    }


def _describe(info: dict[str, Any]) -> str:
    data = info.get("dataset", {})
    return (f"dataset {data.get('name')} (fingerprint {data.get('fingerprint')}, {data.get('n_train')} examples), "
            f"model {info.get('model')} width {info.get('width')}, r={info.get('subset_fraction')}, "
            f"seed {info.get('seed')}, {info.get('train', {}).get('epochs')} epochs, "
            f"{info.get('threads', 'any number of')} thread(s) per member")


def read_pool_info(pool_dir: str | os.PathLike) -> dict[str, Any]:
    """pool.json of a pool folder.

    Raises:
        ConfigError: the folder holds no readable pool.json.
    """
    path = Path(pool_dir) / "pool.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{pool_dir} holds no model pool (no pool.json); build one with `memunlearn memorization pool`") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is unreadable ({exc}); delete the folder and rebuild the pool") from None


def check_pool_matches(pool_dir: Path, info: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse a pool folder built for another dataset, model or recipe.

    Raises:
        ConfigError: naming both settings.
    """
    if info.get("format") != expected["format"]:
        raise ConfigError(
            f"the model pool in {pool_dir} was built by an older memunlearn (pool format {info.get('format')}, "
            f"now {expected['format']}); delete that folder and build the pool again"
        )
    if info.get("key") != expected["key"]:
        raise ConfigError(
            f"the model pool in {pool_dir} was built for {_describe(info)}, not for {_describe(expected)}; "
            "use another --pool-dir or delete that folder"
        )


def build_pool(
    dataset: Dataset,
    spec: PoolSpec,
    pool_size: int = DEFAULT_POOL_SIZE,
    *,
    pool_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    executor: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
    device: str = "auto",
    cpus: int | None = None,
    on_member: Callable[[dict[str, Any]], None] | None = None,
) -> ModelPool:
    """Build (or finish, or reuse) a pool of ``pool_size`` models; return it loaded.

    Members already on disk are kept; only missing or unreadable ones are trained, through the
    executor, and each is saved the moment it finishes. Interrupting the call loses at most the
    members in flight. Another process building the same pool at the same time trains other
    members; a member it is training is waited for, not trained twice.

    Args:
        dataset: the training set the members subsample (and the test set they are scored on).
        spec: architecture, recipe, subset fraction r and pool seed (see :func:`pool_spec_for`).
        pool_size: K, the number of members wanted.
        pool_dir: the pool folder (default: under the cache, keyed by the spec and the data).
        cache_dir: cache root when ``pool_dir`` is not given.
        executor: ``local`` (default) or ``ray``.
        workers: parallel workers.
        ray_address: an existing Ray cluster to join.
        device: where members train (``auto`` = CUDA when present).
        cpus: CPUs the local workers share (default: all this process may use).
        on_member: called with each finished member's result, plus ``trained_this_run``,
            ``present`` (members on disk now), ``pool_size`` and ``elapsed`` seconds (for progress).

    Returns:
        The loaded :class:`ModelPool` of the first ``pool_size`` members, ``build`` saying how
        many were trained now and how long it took.

    Raises:
        ConfigError: ``pool_size`` < 2, unknown executor, Ray missing, or ``pool_dir`` holding a
            pool of another dataset, model or recipe.

    Example:
        >>> spec = pool_spec_for(data, epochs=5)  # doctest: +SKIP
        >>> pool = build_pool(data, spec, pool_size=16, workers=2)  # doctest: +SKIP
        >>> pool.estimate(data.train.y).scores  # doctest: +SKIP
    """
    if pool_size < 2:
        raise ConfigError(f"a model pool needs at least 2 models, got --pool-size {pool_size}")
    check_executor(executor)
    if ray_address and executor != "ray":
        raise ConfigError("--ray-address only applies to --executor ray")
    directory = Path(pool_dir) if pool_dir is not None else default_pool_dir(dataset, spec, cache_dir)
    check_output_dir(directory, "pool directory")
    expected = _pool_info(dataset, spec)
    if (directory / "pool.json").is_file():
        check_pool_matches(directory, read_pool_info(directory), expected)
    else:
        if directory.is_dir() and any(p.name.startswith("member-") for p in directory.iterdir()):
            raise ConfigError(f"{directory} holds pool members but no pool.json; delete it or use another --pool-dir")
        write_json(directory / "pool.json", expected)
    key = expected["key"]
    data = expected["dataset"]

    def finished(k: int) -> bool:
        member = read_member(member_path(directory, k), key, k, data["n_train"], data["n_test"], data["num_classes"])
        if member is None:
            return False
        if spec.keep_weights:  # a member without (intact) weights is trained again, to the same result
            return read_member_weights(directory, k, member.get("weights_sha256")) is not None
        return True

    missing = [k for k in range(pool_size) if not finished(k)]
    reused = pool_size - len(missing)
    trained = 0
    waited = False
    start = time.perf_counter()
    while missing:
        # Claim the members no other process is training; wait for one of the others if none is free.
        claimed: dict[int, FileLock] = {}
        busy = []
        for k in missing:
            lock = FileLock(_member_lock_path(directory, k))
            if not lock.acquire(blocking=False):
                busy.append(k)
            elif finished(k):  # another process finished it meanwhile
                lock.release()
            else:
                claimed[k] = lock
        try:
            if claimed:
                tasks = [MemberTask(k, key, spec.model, spec.width, data["in_channels"], data["num_classes"],
                                    data["image_size"], spec.train, spec.subset_fraction, spec.seed, str(device),
                                    spec.threads, spec.keep_weights)
                         for k in claimed]
                with get_executor(executor, workers, ray_address, cpus) as runner:
                    for task, result in runner.map(train_member, tasks, shared=dataset_arrays(dataset)):
                        write_member(directory, key, result)
                        claimed.pop(task.index).release()
                        trained += 1
                        result.pop("state", None)
                        if on_member is not None:
                            present = pool_size - len(missing) + trained
                            on_member({**result, "trained_this_run": trained, "present": present,
                                       "pool_size": pool_size, "elapsed": time.perf_counter() - start})
            elif busy:
                lock = FileLock(_member_lock_path(directory, busy[0]))
                lock.acquire(waiting_message=None if waited else
                             f"waiting for another process that is training members of the pool in {directory}")
                lock.release()
                waited = True
        finally:
            for lock in claimed.values():
                lock.release()
        missing = [k for k in missing if not finished(k)]
    wall = time.perf_counter() - start
    pool = load_pool(directory, dataset, pool_size=pool_size)
    pool.build = {"trained": trained, "reused": reused, "by_others": pool_size - reused - trained,
                  "keep_weights": spec.keep_weights,
                  "wall_time": wall, "executor": executor, "workers": workers,
                  "models_per_minute": 60 * trained / wall if trained and wall > 0 else float("nan")}
    return pool


def _member_lock_path(directory: Path, index: int) -> Path:
    return Path(directory) / ".locks" / f"member-{index:05d}"


def load_pool(
    pool_dir: str | os.PathLike,
    dataset: Dataset | None = None,
    pool_size: int | None = None,
    spec: PoolSpec | None = None,
) -> ModelPool:
    """Load a pool folder's finished members (the first ``pool_size``, or all there are).

    Args:
        pool_dir: the pool folder.
        dataset: if given, the pool must have been built on exactly this data.
        pool_size: if given, members 0..pool_size−1 must all be present.
        spec: if given, the pool must have been built with this model and recipe.

    Returns:
        The :class:`ModelPool`.

    Raises:
        ConfigError: no pool there, a pool of other data or another model, missing members, or
            fewer than 2 members.
    """
    directory = Path(pool_dir)
    info = read_pool_info(directory)
    data = info["dataset"]
    if dataset is not None and (data["fingerprint"] != dataset.fingerprint or data["n_train"] != len(dataset.train)):
        raise ConfigError(
            f"the model pool in {directory} was built for {_describe(info)}, not for dataset {dataset.name} "
            f"(fingerprint {dataset.fingerprint}, {len(dataset.train)} examples); use another --pool-dir"
        )
    if spec is not None and dataset is not None:
        check_pool_matches(directory, info, _pool_info(dataset, spec))
    indices = range(pool_size) if pool_size is not None else sorted(
        int(p.stem.split("-")[1]) for p in directory.glob("member-*.safetensors") if p.stem.split("-")[1].isdigit()
    )
    members: list[Any] = []
    absent: list[Any] = []  # member numbers
    for k in indices:
        member = read_member(member_path(directory, k), info["key"], k, data["n_train"], data["n_test"], data["num_classes"])
        (members if member is not None else absent).append(member if member is not None else k)
    if absent and pool_size is not None:
        raise ConfigError(
            f"the model pool in {directory} lacks {len(absent)} of its {pool_size} members (e.g. member {absent[0]}); "
            "finish it with `memunlearn memorization pool`"
        )
    if len(members) < 2:
        raise ConfigError(f"the model pool in {directory} has {len(members)} finished members; at least 2 are needed")
    return ModelPool(
        directory=directory, info=info,
        masks=np.stack([m["mask"] for m in members]),
        train_logits=np.stack([m["train_logits"] for m in members]),
        test_logits=np.stack([m["test_logits"] for m in members]),
        members=[{k: v for k, v in m.items() if k not in ("mask", "train_logits", "test_logits")} for m in members],
    )


def pool_summary(pool: ModelPool, labels: torch.Tensor | np.ndarray) -> dict[str, Any]:
    """A JSON-ready description of a pool: setting, cost, accuracies, exact-score statistics."""
    estimate = pool.estimate(labels)
    reliability = pool.reliability(labels) if len(pool) >= 4 else float("nan")
    return {
        "directory": str(pool.directory), "pool_size": len(pool), **{k: v for k, v in pool.info.items() if k != "format"},
        "train_seconds": pool.train_seconds, "build": pool.build,
        "mean_subset_accuracy": float(np.mean([m["subset_accuracy"] for m in pool.members])),
        "mean_held_out_accuracy": float(np.nanmean([m["held_out_accuracy"] for m in pool.members])),
        "mean_test_accuracy": float(np.mean([m["test_accuracy"] for m in pool.members])),
        "split_half_reliability": reliability,
        "scores": estimate.summary(),
    }


__all__ = [
    "DEFAULT_POOL_SIZE", "DEFAULT_SUBSET_FRACTION", "MemberTask", "ModelPool", "PoolSpec", "build_pool",
    "default_pool_dir", "load_pool", "member_seed", "read_member_weights", "pool_spec_for", "pool_summary", "subset_indices",
    "train_member",
]
