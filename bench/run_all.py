"""``make bench``: every benchmark with the parameters docs/performance.md reports, one after another.

Each prints its own figures beside its same-process baseline. Pass ``--quick`` for small sizes.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes (a minute or two in all)")
    args = ap.parse_args()
    q = args.quick
    runs = [
        ["rtpbatch_layout.py"],
        ["core_bench.py", "--streams", "500" if q else "2000", "--seconds", "5" if q else "10"],
        ["edge_bench.py", "--calls", "200" if q else "500,2000,3000", "--seconds", "5" if q else "10",
         "--tshark", *([] if q else ["--kafka"])],
        ["worker_bench.py", "--calls", "50" if q else "500", "--seconds", "10" if q else "20"],
    ]
    failed = 0
    for argv in runs:
        print(f"\n=== {' '.join(argv)}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / argv[0]), *argv[1:]])
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
