"""Executors: where the model pool's independent training jobs run.

An executor maps a module-level function over picklable task descriptions and yields
``(task, result)`` pairs as they finish, so the caller can save each result at once (that is
what makes the pool resumable). ``fn(task, shared)`` also receives one ``shared`` object (the
dataset arrays), sent once per worker rather than once per task.

- ``local`` (default): one process runs the tasks in turn when ``workers=1``; otherwise a
  ``ProcessPoolExecutor`` with the ``spawn`` start method, each worker using
  ``max(1, cpus // workers)`` torch threads so the workers do not oversubscribe the CPU (a task
  may fix its own thread count, as pool members do). Workers exit when their parent dies, even
  by SIGKILL: on Linux the kernel kills them (``PR_SET_PDEATHSIG``), elsewhere a watchdog thread
  notices the parent is gone within a second.
- ``ray``: Ray tasks; ``ray_address`` joins an existing cluster, otherwise a local one starts
  with ``num_cpus=workers``. Ray is an optional extra (``pip install memunlearn[ray]``).

Example:
    >>> with get_executor("local", workers=2) as executor:  # doctest: +SKIP
    ...     for task, result in executor.map(train_member, tasks, shared=arrays):
    ...         save(result)
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator

import torch

from ..errors import ConfigError, unknown_name

TaskFn = Callable[[Any, Any], Any]


def available_cpus() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity mask
        return os.cpu_count() or 1


def threads_per_worker(workers: int, cpus: int | None = None) -> int:
    """Torch threads for each of ``workers`` processes sharing ``cpus`` CPUs.

    Example:
        >>> threads_per_worker(2, cpus=16), threads_per_worker(32, cpus=16)
        (8, 1)
    """
    return max(1, (cpus or available_cpus()) // max(1, workers))


class Executor:
    """Base class: ``map`` runs ``fn(task, shared)`` for every task and yields as they finish."""

    name = "executor"

    def __init__(self, workers: int = 1):
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        self.workers = workers

    def map(self, fn: TaskFn, tasks: Iterable[Any], shared: Any = None) -> Iterator[tuple[Any, Any]]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers}

    def close(self) -> None:
        """Release processes or clusters this executor started."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---------------------------------------------------------------- local

_WORKER_SHARED: Any = None


def _init_local_worker(threads: int, shared: Any, parent_pid: int | None = None) -> None:
    """Runs once in each spawned worker: die with the parent, split the CPUs, keep the shared payload."""
    global _WORKER_SHARED
    if parent_pid is not None:
        exit_with_parent(parent_pid)
    torch.set_num_threads(threads)
    _WORKER_SHARED = shared


def exit_with_parent(parent_pid: int, poll_seconds: float = 1.0) -> None:
    """Make this process exit when ``parent_pid`` dies (an orphaned worker would train on for nothing).

    On Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` asks the kernel to kill this process when its
    parent dies; everywhere, a daemon thread also checks every ``poll_seconds`` that the parent is
    still this process's parent, and exits otherwise (it also covers a parent that died before
    the ``prctl`` call).
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no libc prctl: the watchdog below still works

    def watchdog() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(poll_seconds)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watchdog, name="memunlearn-parent-watchdog", daemon=True).start()


def _run_in_worker(fn: TaskFn, task: Any) -> Any:
    return fn(task, _WORKER_SHARED)


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LocalExecutor(Executor):
    """Tasks in this process (``workers=1``) or in a spawn-started process pool."""

    name = "local"

    def __init__(self, workers: int = 1, cpus: int | None = None):
        super().__init__(workers)
        self.cpus = cpus or available_cpus()
        self.threads = threads_per_worker(workers, self.cpus)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "threads_per_worker": self.threads}

    def map(self, fn: TaskFn, tasks: Iterable[Any], shared: Any = None) -> Iterator[tuple[Any, Any]]:
        tasks = list(tasks)
        if self.workers == 1:
            with _torch_threads(self.threads):
                for task in tasks:
                    yield task, fn(task, shared)
            return
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # fork is unsafe once torch has started threads
        with ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_init_local_worker,
            initargs=(self.threads, shared, os.getpid())
        ) as pool:
            pending = {pool.submit(_run_in_worker, fn, task): task for task in tasks}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        task = pending.pop(future)
                        yield task, future.result()
            finally:
                for future in pending:
                    future.cancel()


# ---------------------------------------------------------------- ray


def _ray_module():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the ray executor needs Ray, which is not installed; run `pip install memunlearn[ray]` "
            "or use --executor local"
        ) from None
    return ray


def _run_ray_task(fn: TaskFn, task: Any, shared: Any, threads: int) -> Any:
    torch.set_num_threads(threads)
    return fn(task, shared)


class RayExecutor(Executor):
    """Ray tasks, one CPU each; joins ``address`` or starts a local cluster with ``workers`` CPUs."""

    name = "ray"

    def __init__(self, workers: int = 1, address: str | None = None, cpus_per_task: int = 1):
        super().__init__(workers)
        self.ray = _ray_module()
        self.address = address
        self.cpus_per_task = cpus_per_task
        self.started = False
        if not self.ray.is_initialized():
            if address:
                self.ray.init(address=address, log_to_driver=False)
            else:
                self.ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                              runtime_env={"env_vars": _python_path_env()})
            self.started = True

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "ray_address": self.address, "cluster_cpus": self.ray.cluster_resources().get("CPU")}

    def map(self, fn: TaskFn, tasks: Iterable[Any], shared: Any = None) -> Iterator[tuple[Any, Any]]:
        ray = self.ray
        remote = ray.remote(num_cpus=self.cpus_per_task)(_run_ray_task)
        shared_ref = ray.put(shared)  # stored once in the object store, not once per task
        pending = {remote.remote(fn, task, shared_ref, self.cpus_per_task): task for task in tasks}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    task = pending.pop(ref)
                    yield task, ray.get(ref)
        finally:
            for ref in pending:
                ray.cancel(ref)

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
            self.started = False


def _python_path_env() -> dict[str, str]:
    """Make a local cluster's workers import the same memunlearn as this process (an
    uninstalled checkout on PYTHONPATH included)."""
    import memunlearn

    source = os.path.dirname(os.path.dirname(os.path.abspath(memunlearn.__file__)))
    paths = [source] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != source]
    return {"PYTHONPATH": os.pathsep.join(paths)}


_EXECUTORS: dict[str, Callable[..., Executor]] = {
    "local": lambda workers=1, ray_address=None, cpus=None: LocalExecutor(workers, cpus),
    "ray": lambda workers=1, ray_address=None, cpus=None: RayExecutor(workers, ray_address),
}


def available_executors() -> list[str]:
    """The executor names: ``local`` and ``ray``.

    Example:
        >>> available_executors()
        ['local', 'ray']
    """
    return sorted(_EXECUTORS)


def register_executor(name: str, factory: Callable[..., Executor]) -> None:
    """Register ``factory(workers=..., ray_address=..., cpus=...) -> Executor`` under ``name``."""
    if name in _EXECUTORS:
        raise ConfigError(f"executor {name!r} is already registered")
    _EXECUTORS[name] = factory


def check_executor(name: str) -> None:
    """Fail early (before any work) on an unknown executor or a missing Ray.

    Raises:
        ConfigError: unknown name, or ``ray`` without Ray installed.
    """
    if name not in _EXECUTORS:
        raise unknown_name("executor", name, _EXECUTORS)
    if name == "ray":
        _ray_module()


def get_executor(
    name: str = "local", workers: int = 1, ray_address: str | None = None, cpus: int | None = None
) -> Executor:
    """Build an executor by name; use it as a context manager so it is shut down after.

    Args:
        name: ``local`` (default) or ``ray``.
        workers: parallel workers (local processes, or the CPUs of a local Ray cluster).
        ray_address: join this Ray cluster instead of starting a local one (``ray`` only).
        cpus: CPUs the local workers share (default: all this process may use).

    Returns:
        An :class:`Executor`.

    Raises:
        ConfigError: unknown executor, workers < 1, Ray requested but not installed, or
            ``ray_address`` given to a non-Ray executor.

    Example:
        >>> with get_executor("local", workers=1) as executor:
        ...     [result for _, result in executor.map(lambda task, shared: task * shared, [1, 2], shared=10)]
        [10, 20]
    """
    check_executor(name)
    if ray_address and name != "ray":
        raise ConfigError("--ray-address only applies to --executor ray")
    return _EXECUTORS[name](workers=workers, ray_address=ray_address, cpus=cpus)
