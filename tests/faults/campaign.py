"""Fault campaigns: kill -9 at random moments and at named points, clean closes in
a loop, damaged files, fuzzed commands and arguments. Each trial checks what a
storage engine promises: every acknowledged batch whole and present, nothing
else, every value as written, no lock wedged, nothing leaked.

The tests beside this file run bounded, seeded campaigns; a long one runs with
    python tests/faults/campaign.py kill --trials 200 --seed 7
(kill | close | corrupt | ddl | args; --help for the rest).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
for _path in (os.path.dirname(os.path.dirname(HERE)), HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import workload  # noqa: E402
from damage import run_corruption  # noqa: E402
from fuzz import run_args_fuzz, run_ddl_fuzz  # noqa: E402
from kill import KINDS, SERVICE_POINTS, WRITER_POINTS, make_trial, run_clean_close, run_kill  # noqa: E402
from procs import Failed, deadline, leaks  # noqa: E402

import monotone  # noqa: E402

TRIAL_LIMIT = 600.0  # seconds a whole trial may take


def run_one(campaign: str, seed: int, tmp: str, args) -> tuple[str, object]:
    """One trial of a campaign in the directory tmp: (what it was, what it found)."""
    repo = os.path.join(tmp, "repo")
    if campaign == "kill":
        trial = make_trial(seed, tuple(args.kinds.split(",")), tuple(args.points.split(",")))
        return trial.describe(), run_kill(repo, trial)
    if campaign == "close":
        return f"seed={seed}", run_clean_close(repo, seed, rounds=3)
    if campaign == "corrupt":
        return f"seed={seed}", run_corruption(tmp, seed, trials=20)
    if campaign == "ddl":
        return f"seed={seed}", run_ddl_fuzz(repo, seed, statements=400)
    return f"seed={seed}", run_args_fuzz(repo, seed, calls=400)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("campaign", choices=["kill", "close", "corrupt", "ddl", "args"])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kinds", default=",".join(KINDS), help="kill campaign: what to kill")
    ap.add_argument("--points", default=",".join(WRITER_POINTS + SERVICE_POINTS),
                    help="kill campaign: the fault points kind 'point' arms")
    ap.add_argument("--keep", action="store_true", help="keep the directory of a failed trial")
    args = ap.parse_args(argv)
    failures = 0
    started = time.monotonic()
    for i in range(args.trials):
        seed = args.seed * 100_000 + i
        tmp = tempfile.mkdtemp(prefix="mtn-fault-")
        what = f"seed={seed}"
        try:
            with deadline(TRIAL_LIMIT):
                what, result = run_one(args.campaign, seed, tmp, args)
            print(f"ok   {what} {result}", flush=True)
            shutil.rmtree(tmp, ignore_errors=True)
        except (Failed, workload.Broken, monotone.MonotoneError) as e:
            failures += 1
            print(f"FAIL {what}: {type(e).__name__}: {e}", flush=True)
            for name in ("repo", "base", "work"):
                leaks(os.path.join(tmp, name))
            if args.keep:
                print(f"     kept {tmp}", flush=True)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.campaign}: {args.trials} trials, {failures} failed, "
          f"{time.monotonic() - started:.0f} s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
