"""Helpers shared by the benchmark scripts: machine description and atomic JSON output."""

from __future__ import annotations

import argparse
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


def pool_benchmark_parser(doc: str) -> argparse.ArgumentParser:
    """The options every model-pool benchmark shares: what to render, which data, which model."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render", nargs="+", metavar="JSON", help="print the markdown tables of result files and exit")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir")
    parser.add_argument("--train-size", type=int, help="stratified training subset (default: all)")
    parser.add_argument("--model", help="default: the dataset's recipe")
    parser.add_argument("--width", type=int, help="default: the dataset's recipe")
    return parser
