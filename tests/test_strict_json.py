"""Results and benchmark files are strict JSON (RFC 8259): no NaN or Infinity (SPEC §6)."""

import json
from pathlib import Path

import pytest

from memunlearn.io import write_json

RESULTS = sorted((Path(__file__).resolve().parents[1] / "benchmarks" / "results").glob("*.json"))


def _strict(text: str):
    def refuse(constant):
        raise AssertionError(f"non-strict JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_write_json_writes_null_for_undefined_values(tmp_path):
    path = write_json(tmp_path / "r.json", {"half_width": float("nan"), "values": [1.0, float("-inf")]})
    assert _strict(path.read_text()) == {"half_width": None, "values": [1.0, None]}


@pytest.mark.parametrize("path", RESULTS, ids=[p.name for p in RESULTS])
def test_every_committed_benchmark_result_is_strict_json(path):
    _strict(path.read_text())
