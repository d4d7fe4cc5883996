"""The long run of the input fuzz suite (tests/test_fuzz.py): the same properties on many more
generated cases, with a fresh random seed each run unless one is given.

    python benchmarks/fuzz_long.py [--cases 20000] [--seed N]

Prints pytest's summary and the time taken; exits non-zero on the first counterexample, which
hypothesis prints in full (rerun with the printed seed to reproduce it).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=20000, help="generated cases over all the fuzz tests")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    env = {**os.environ, "POSERENET_FUZZ_EXAMPLES": str(args.cases)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", f"--hypothesis-seed={seed}",
           str(REPO / "tests" / "test_fuzz.py")]  # fmt: skip
    print(f"{args.cases} cases, seed {seed}", flush=True)
    t = time.time()
    rc = subprocess.call(cmd, env=env, cwd=REPO)
    print(f"{time.time() - t:.0f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
