"""One command timed in two checkouts of this project, alternating: is a
change slower? A benchmark, not a test.

    python -m bench.compare_checkouts --baseline /tmp/before --repeats 3 -- \\
        -m data_prep convert --csv raw/train.csv --images raw/train --out {out} --size 256 --overwrite

Each checkout runs `python <args>` with its own folder first on PYTHONPATH
(the same interpreter and packages), `{out}` replaced by a scratch path of
its own; the first run of each is a warm-up. Prints the median seconds of
each and their ratio (this checkout / baseline).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_once(checkout, args, scratch):
    out = os.path.join(scratch, "out")
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, *[a.replace("{out}", out) for a in args]]
    start = time.perf_counter()
    subprocess.run(
        command,
        cwd=checkout,
        check=True,
        capture_output=True,
        env=dict(os.environ, PYTHONPATH=checkout, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="the other checkout (e.g. a git worktree of main)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each, alternating, after a warm-up")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="after --: python's arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    checkouts = {"this": ROOT, "baseline": os.path.abspath(args.baseline)}
    seconds = {name: [] for name in checkouts}
    with tempfile.TemporaryDirectory() as scratch:
        for name, checkout in checkouts.items():
            run_once(checkout, command, scratch)
        for _ in range(args.repeats):
            for name, checkout in checkouts.items():
                seconds[name].append(run_once(checkout, command, scratch))
    medians = {name: round(statistics.median(values), 2) for name, values in seconds.items()}
    record = {
        "command": " ".join(command),
        "seconds": {k: [round(v, 2) for v in s] for k, s in seconds.items()},
        "median_s": medians,
        "ratio_this_to_baseline": round(medians["this"] / medians["baseline"], 3),
    }
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
