"""Helpers shared by the benchmark scripts: machine description and atomic JSON output."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from memunlearn.experiment import versions  # noqa: E402
from memunlearn.io import write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {
        **versions(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "processor": platform.processor() or platform.machine(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def save(name: str, payload: dict) -> Path:
    path = write_json(RESULTS / f"{name}.json", {"machine": machine(), "command": " ".join(sys.argv), **payload})
    print(f"wrote {path}")
    return path
