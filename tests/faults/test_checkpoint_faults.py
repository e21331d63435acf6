"""Issue 11 fault suite, training state: a truncated or corrupt resume checkpoint falls back to
the previous one (or restarts from step 0) with a warning, and the run still finishes."""

from __future__ import annotations

import pytest

from test_engine import _items, _state_bytes, _train
from voicelane.engine import train


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    return _items(tmp_path_factory.mktemp("ck_items"))


def _corrupt(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif how == "garbage":
        path.write_bytes(b"\x00not a checkpoint" * 100)
    else:
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_corrupt_latest_checkpoint_falls_back_to_the_previous(items, tmp_path, how, capfd):
    full = _train(items, tmp_path / "full", 4, ckpt_every=1)
    run = tmp_path / "part"
    _train(items, run, 3, ckpt_every=1)  # "killed" after step 3: latest = step 3, previous = step 2
    assert (run / train.PREV_CKPT_NAME).exists()
    _corrupt(run / train.CKPT_NAME, how)
    resumed = _train(items, run, 4, ckpt_every=1)
    err = capfd.readouterr().err
    assert "resuming from the previous checkpoint (step 2)" in err and "moved to checkpoint.pt.corrupt" in err
    assert (run / (train.CKPT_NAME + ".corrupt")).exists()  # kept for inspection, never deleted
    assert resumed["step"] == 4
    assert _state_bytes(resumed) == _state_bytes(full)  # same result as an uninterrupted run


def test_no_readable_checkpoint_restarts_with_a_warning(items, tmp_path, capfd):
    full = _train(items, tmp_path / "full", 3)
    run = tmp_path / "part"
    _train(items, run, 2, ckpt_every=1)
    _corrupt(run / train.CKPT_NAME, "truncated")
    _corrupt(run / train.PREV_CKPT_NAME, "garbage")
    resumed = _train(items, run, 3)
    assert "training restarts from step 0" in capfd.readouterr().err
    assert resumed["step"] == 3 and _state_bytes(resumed) == _state_bytes(full)
