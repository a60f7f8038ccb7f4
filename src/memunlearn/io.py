"""Files: checked before any work, written atomically, locked while built, verified when read.

- :func:`check_output_dir` / :func:`check_output_file`: refuse an output or cache location that
  exists as the wrong kind, cannot be written or has no space, BEFORE anything is computed.
- :func:`atomic_path` / :func:`write_json`: a reader never sees a half-written result or checkpoint;
  files get the usual permissions (``0o666 & ~umask``), not ``mkstemp``'s 0600.
- :class:`FileLock`: one process builds an artefact while a second one waits, then reuses it.
- :func:`sha256_of_tensors` / :func:`json_checksum`: content checksums stored with every artefact
  and verified when it is read back.

Nothing here imports torch at module level (the command line's ``--help`` must stay fast).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

from .errors import OutputError

# Refuse to start a job on a file system with less free space than this.
MIN_FREE_BYTES = 8 * 2**20

# Every file this process renamed into place, in order (the CLI reports them on an interrupt).
_WRITTEN: list[Path] = []


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where artefacts are cached: ``cache_dir``, else ``$MEMUNLEARN_CACHE``, else ``~/.cache/memunlearn``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("MEMUNLEARN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "memunlearn"


# ---------------------------------------------------------------- checks before any work


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_creatable(path: Path, what: str, min_free_bytes: int) -> None:
    """``path`` (absent or a directory) can be created and written: its nearest existing
    ancestor is a writable directory with space left."""
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise OutputError(f"{what} {path} cannot be created: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path.absolute() else f" (in {existing})"
        raise OutputError(f"{what} {path} is not writable{where}; choose another location")
    try:
        stats = os.statvfs(existing)
    except (AttributeError, OSError):  # no statvfs (Windows) or an exotic file system: skip
        return
    free = stats.f_bavail * stats.f_frsize
    if free < min_free_bytes:
        raise OutputError(
            f"no space for {what} {path}: {free / 2**20:.1f} MiB free on its file system "
            f"(at least {min_free_bytes / 2**20:.0f} MiB needed)"
        )


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (after symlinks; hard links too when both exist)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.expanduser().resolve() == b.expanduser().resolve()


def _check_not_input(path: Path, what: str, inputs) -> None:
    for given in inputs or ():
        if given is None or str(given) == "":
            continue
        if _same_file(path, Path(given).expanduser()):
            raise OutputError(f"{what} {path} is also an input of this command ({given}); writing it would destroy "
                              "the input, so choose another output path")


def _check_regular(path: Path, what: str) -> None:
    """An existing ``path`` must be a regular file (it is replaced by a rename): a FIFO, a device
    or a socket is refused."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    import stat

    if stat.S_ISDIR(mode):
        raise OutputError(f"{what} {path} is a directory; give a file path")
    if not stat.S_ISREG(mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise OutputError(f"{what} {path} is {kind}; outputs are regular files, written atomically: give a file path")


def check_output_dir(path: str | os.PathLike, what: str = "output directory",
                     min_free_bytes: int = MIN_FREE_BYTES, files=(), inputs=()) -> Path:
    """Check, before any work, that ``path`` can be used as an output or cache directory.

    It may exist (as a directory) or not (then its nearest existing ancestor must be a writable
    directory); nothing is created.

    Args:
        path: the directory.
        what: how the user knows it (``"--out"``, ``"cache directory"``); starts the message.
        min_free_bytes: refuse a file system with less free space than this.
        files: names (relative to ``path``) the command will write there: each must be absent or
            a regular file (not a folder, FIFO or device), and none may be one of ``inputs``.
        inputs: every file the command reads; none may be overwritten.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: it is a file, lies under a file, is not writable, or its file system is full;
            an output file inside it is of the wrong kind or is an input.

    Example:
        >>> check_output_dir("/etc/hostname", "--out")  # doctest: +SKIP
        Traceback (most recent call last):
        memunlearn.errors.OutputError: --out /etc/hostname is a file, not a directory; ...
    """
    path = Path(path).expanduser()
    if str(path) == "":
        raise OutputError(f"{what} is empty; give a directory")
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file, not a directory; choose another path or remove the file")
    _check_creatable(path, what, min_free_bytes)
    for name in files:
        target = path / name
        _check_regular(target, f"{what}: {name}")
        _check_not_input(target, f"{what}: {name}", inputs)
    return path


def check_output_file(path: str | os.PathLike, what: str = "output file",
                      min_free_bytes: int = MIN_FREE_BYTES, inputs=()) -> Path:
    """Check, before any work, that a file can be written (atomically) at ``path``.

    An existing regular file there is fine (it is replaced only when the new one is complete),
    unless it is one of ``inputs``.

    Raises:
        OutputError: ``path`` is a directory, a FIFO or a device, one of ``inputs``, its folder
            cannot be created or written, or its file system is full.
    """
    if str(path) == "":
        raise OutputError(f"{what} is empty; give a file path")
    path = Path(path).expanduser()
    _check_regular(path, what)
    _check_not_input(path, what, inputs)
    _check_creatable(path.parent if str(path.parent) else Path("."), what, min_free_bytes)
    return path


def check_cache_dir(cache_dir: str | os.PathLike | None = None, what: str = "cache directory") -> Path:
    """The cache and each of its sub-folders (checkpoints, cells, datasets, pools, privacy) must be
    a directory or absent, checked before any work.

    Raises:
        OutputError: the cache or a sub-folder is a file, or the cache cannot be written.
    """
    root = check_output_dir(cache_root(cache_dir), what)
    for name in CACHE_FOLDERS:
        sub = root / name
        if sub.exists() and not sub.is_dir():
            raise OutputError(f"{what} {root}: {sub} is a file, not a folder; remove it (the cache rebuilds it)")
    return root


# The cache's sub-folders (each a directory when present).
CACHE_FOLDERS = ("checkpoints", "cells", "datasets", "pools", "privacy")


# ---------------------------------------------------------------- atomic writes


def _umask() -> int:
    try:  # Linux ≥ 4.7 shows it without changing it (os.umask would, briefly, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def _output_error(path: Path, exc: OSError, written: int | None = None) -> OutputError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = _free_bytes(path.parent)
        needed = f" (at least {_size(written)} needed, {_size(free)} free)" if written and free is not None else ""
        return OutputError(f"cannot write {path}: no space left on its file system{needed}; nothing was written "
                           "there (free some space or choose another location)")
    return OutputError(f"cannot write {path}: {reason}; nothing was replaced")


def _free_bytes(folder: Path) -> int | None:
    try:
        stats = os.statvfs(_nearest_existing(folder))
    except (AttributeError, OSError):
        return None
    return stats.f_bavail * stats.f_frsize


def _size(count: int | None) -> str:
    if count is None:
        return "?"
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count / 2**10:.1f} KiB"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, size_hint: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The file gets the permissions a plain ``open`` would give it (``0o666 & ~umask``).
    ``size_hint`` (bytes the file will take) is named in the error when the disk is full.

    Raises:
        OutputError: the folder cannot be created or the file cannot be written (no space,
            read-only, ...); an existing file at ``path`` is then left as it was, and no
            temporary file is left behind.

    Example:
        >>> with atomic_path("out/results.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _output_error(path, exc) from exc
    tmp = Path(tmp_name)
    try:
        yield tmp
        # after the body: a writer may have replaced the temporary file (safetensors makes it 0600)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        _WRITTEN.append(path)
    except OutputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a full disk surfaces as OSError, SafetensorError, ...
        written = _size_of(tmp)
        if _is_disk_full(exc, path):
            requested = _requested_bytes(exc)
            raise _output_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
                                max(written or 0, requested or 0, size_hint or 0) or None) from exc
        if isinstance(exc, OSError) and (exc.errno in _WRITE_ERRNOS or exc.filename in (str(tmp), str(path))):
            raise _output_error(path, exc, written) from exc
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _is_disk_full(exc: BaseException, path: Path) -> bool:
    """Whether ``exc`` (from any writer: open/write, numpy, safetensors) means the disk is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    if "No space left on device" in text or "os error 28" in text or "Disk quota exceeded" in text:
        return True
    # numpy's tofile/save on a full disk: "N requested and M written", without an errno
    return isinstance(exc, OSError) and _requested_bytes(exc) is not None and _free_bytes(path.parent) == 0


def _requested_bytes(exc: BaseException) -> int | None:
    import re

    match = re.search(r"(\d+) requested and (\d+) written", str(exc))
    return int(match.group(1)) if match else None


def written_files(since: int = 0) -> list[Path]:
    """Files this process has written (renamed into place) so far, from the ``since``-th on.

    Example:
        >>> before = len(written_files())
        >>> written_files(before)
        []
    """
    return list(_WRITTEN[since:])


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented, strict JSON (RFC 8259), atomically.

    NaN and infinities become ``null`` (SPEC §6: an undefined value, such as the interval over one
    seed, must not make the file unreadable to jq or a browser).
    """
    with atomic_path(path) as tmp:
        text = json.dumps(strict_json(payload), indent=2, sort_keys=False, allow_nan=False, default=_json_default)
        tmp.write_text(text + "\n")
    return Path(path)


def strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None, numpy scalars and arrays as Python ones.

    Example:
        >>> strict_json({"mean": float("nan"), "values": [1.0, float("inf")]})
        {'mean': None, 'values': [1.0, None]}
    """
    import math

    import numpy as np

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return strict_json(value.tolist())
    if isinstance(value, np.generic):
        return strict_json(value.item())
    return value


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


# ---------------------------------------------------------------- locks


def notice(line: str) -> None:
    """One line on stderr for the user (waiting for a lock, ...)."""
    print(f"memunlearn: {line}", file=sys.stderr, flush=True)


class FileLock:
    """An exclusive lock on ``<path>.lock`` (``fcntl.flock``), released when the holder dies.

    Separate :class:`FileLock` objects exclude each other even within one process. Where the
    platform has no ``fcntl`` (Windows) the lock does nothing.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "model.safetensors"
        >>> with FileLock(target):
        ...     FileLock(target).acquire(blocking=False)
        False
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(str(path) + ".lock")
        self._handle: IO[str] | None = None

    def acquire(self, blocking: bool = True, waiting_message: str | None = None) -> bool:
        """Take the lock; with ``blocking=False`` return False at once if another holder has it.

        ``waiting_message`` is printed (see :func:`notice`) before blocking on a busy lock.
        """
        try:
            import fcntl
        except ImportError:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not blocking:
                handle.close()
                return False
            if waiting_message:
                notice(waiting_message)
            fcntl.flock(handle, fcntl.LOCK_EX)
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor releases the flock
            self._handle = None

    def __enter__(self) -> "FileLock":
        self.acquire(waiting_message=f"waiting for another process to finish {self.path.name[:-5]}")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


# ---------------------------------------------------------------- checksums


def sha256_of_tensors(tensors: Mapping[str, Any]) -> str:
    """SHA-256 of named tensors: names, dtypes, shapes and bytes, in name order.

    Any change to a single byte of any tensor, a name, a dtype or a shape changes it.

    Example:
        >>> import torch
        >>> a = sha256_of_tensors({"w": torch.zeros(2)})
        >>> a == sha256_of_tensors({"w": torch.zeros(2)}), a == sha256_of_tensors({"w": torch.tensor([0.0, 1e-30])})
        (True, False)
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(_byte_dtype()).numpy().data)
    return digest.hexdigest()


def _byte_dtype():
    import torch

    return torch.uint8


def json_checksum(payload: Any) -> str:
    """SHA-256 of ``payload`` as canonical JSON (sorted keys, no spaces; NaN is refused).

    Store it beside a JSON result and compare on reading: a damaged or hand-edited result no
    longer matches.

    Example:
        >>> json_checksum({"b": 1, "a": [1.5, None]}) == json_checksum({"a": [1.5, None], "b": 1})
        True
    """
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()
