import pytest
import torch

from memunlearn import build_model
from memunlearn.checkpoints import cached, load_into, read_checkpoint, save_checkpoint
from memunlearn.errors import CheckpointError, DamagedArtefactWarning


def test_round_trip_with_extras_and_metadata(tmp_path):
    model = build_model("cnn", 1, 10, width=4, image_size=8, seed=1)
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"dynamics.x": torch.arange(3)}, {"wall_time": 1.5})
    state, extra, metadata = read_checkpoint(path)
    fresh = load_into(build_model("cnn", 1, 10, width=4, image_size=8, seed=2), state)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    assert torch.equal(extra["dynamics.x"], torch.arange(3))
    assert metadata == {"wall_time": 1.5}
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"


def test_corrupt_and_mismatched_checkpoints(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        read_checkpoint(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.safetensors")
    path = save_checkpoint(tmp_path / "m.safetensors", build_model("cnn", 1, 10, width=4, image_size=8))
    state, _, _ = read_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_into(build_model("cnn", 1, 10, width=8, image_size=8), state)


def test_cache_reuses_and_rebuilds_corrupt_entries(tmp_path):
    calls = []

    def produce():
        calls.append(1)
        return build_model("cnn", 1, 10, width=4, image_size=8, seed=len(calls)), {}, {"n": len(calls)}

    build = lambda: build_model("cnn", 1, 10, width=4, image_size=8)  # noqa: E731
    path = tmp_path / "c.safetensors"
    _, _, meta, reused = cached(path, produce, build)
    assert not reused and meta == {"n": 1}
    _, _, meta, reused = cached(path, produce, build)
    assert reused and meta == {"n": 1} and len(calls) == 1
    path.write_bytes(path.read_bytes()[:100])  # truncated: reported, not rebuilt silently
    with pytest.warns(DamagedArtefactWarning, match="c.safetensors is unreadable or corrupt"):
        _, _, meta, reused = cached(path, produce, build)
    assert not reused and meta == {"n": 2}
