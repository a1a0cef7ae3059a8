"""The fault campaigns, bounded and seeded for every run; `pytest -m slow` runs long
ones, and `python tests/faults/campaign.py KIND --trials N --seed S` any length.

Each trial is a test of its own, so a failure names its seed: rerun it with
`python tests/faults/campaign.py kill --trials 1 --seed ...` (see campaign.main).
"""
from __future__ import annotations

import os

import pytest
from campaign import TRIAL_LIMIT
from damage import run_corruption
from fuzz import run_args_fuzz, run_ddl_fuzz
from kill import make_trial, run_clean_close, run_kill
from procs import deadline, leaks

# trials every run: a few minutes on two cores
KILL_SEEDS = range(900_000, 900_005)
CORRUPT_SEEDS = (11,)
FUZZ_SEEDS = (21,)


def trial_dir(tmp_path) -> str:
    return str(tmp_path)


def _kill(tmp_path, seed: int) -> None:
    trial = make_trial(seed)
    repo = os.path.join(str(tmp_path), "repo")
    try:
        with deadline(TRIAL_LIMIT):
            stats = run_kill(repo, trial)
    except BaseException:
        leaks(repo)
        raise
    assert stats["acked"] > 0, trial.describe()


@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_kill_campaign(tmp_path, seed):
    """kill -9 of writers, the coordinator, workers or all of them, at random moments
    or named points, while others write, read and refresh: every acknowledged batch
    whole, nothing else, no wedge, no leak."""
    _kill(tmp_path, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(910_000, 910_200))
def test_kill_campaign_long(tmp_path, seed):
    _kill(tmp_path, seed)


@pytest.mark.parametrize("races", [True, False], ids=["slowed-races", "plain"])
def test_clean_close_loop(tmp_path, races):
    """Write with WAL rotation and background refreshes, close, reopen, count; again."""
    repo = os.path.join(str(tmp_path), "repo")
    with deadline(TRIAL_LIMIT):
        stats = run_clean_close(repo, seed=31, rounds=2, batches=120, races=races)
    assert stats["acked"] == 2 * 120


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40))
def test_clean_close_loop_long(tmp_path, seed):
    repo = os.path.join(str(tmp_path), "repo")
    run_clean_close(repo, seed=seed, rounds=10, batches=300, races=bool(seed % 2))


@pytest.mark.parametrize("seed", CORRUPT_SEEDS)
def test_corruption_campaign(tmp_path, seed):
    """Damaged partition files, WAL files and config.json: the data read whole, or an
    error (and everything back once the file is restored), or, for a WAL, only whole
    batches at the damaged tail lost. Never wrong data."""
    with deadline(TRIAL_LIMIT):
        outcomes = run_corruption(trial_dir(tmp_path), seed, trials=15)
    assert len(outcomes) == 15
    assert any("error" in o for o in outcomes), "no damage was ever detected"


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 130))
def test_corruption_campaign_long(tmp_path, seed):
    run_corruption(trial_dir(tmp_path), seed, trials=40)


@pytest.mark.parametrize("seed", FUZZ_SEEDS)
def test_ddl_fuzz(tmp_path, seed):
    """Random and mutated commands: a result or a MonotoneError, never an internal
    error, and the repository reopens with what it showed."""
    repo = os.path.join(str(tmp_path), "repo")
    with deadline(TRIAL_LIMIT):
        counts = run_ddl_fuzz(repo, seed, statements=300)
    assert counts["ok"] and counts["error"] and counts["reopened"] >= 7


@pytest.mark.parametrize("seed", FUZZ_SEEDS)
def test_write_arguments_fuzz(tmp_path, seed):
    """Random write_batch arguments: bad ones refused with a MonotoneError, good ones
    written, and what is read is what a dict model of the accepted calls holds."""
    repo = os.path.join(str(tmp_path), "repo")
    with deadline(TRIAL_LIMIT):
        counts = run_args_fuzz(repo, seed, calls=800)
    assert counts["ok"] and counts["refused"] and counts["events"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(200, 220))
def test_fuzz_long(tmp_path, seed):
    run_ddl_fuzz(os.path.join(str(tmp_path), "ddl"), seed, statements=2000)
    run_args_fuzz(os.path.join(str(tmp_path), "args"), seed, calls=5000)
