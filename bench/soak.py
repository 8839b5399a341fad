"""Soak test of kill safety: a tiny training run killed at random instants,
then finished by the same command, N times (issue #27).

    python -m bench.soak                       # 30 kills, SIGKILL or SIGTERM at random
    python -m bench.soak --runs 5 --epochs 2   # a short look

Each cycle starts `train_keras.py ... --export` in a fresh run folder,
sends SIGKILL or SIGTERM (drawn at random) at an instant drawn uniformly
over an uninterrupted run's length (measured first, in the same way), then
runs the same command again until it exits 0 (at most --tries times) and
checks the run:

- every epoch trained once: history.csv holds epochs 0..E-1, each once;
- the best checkpoint right: best.json names the epoch of the best val_auc
  in the history, with that value, and best.weights.h5 has its sha256;
- one export: the export base holds one version, and run.json records it;
- nothing half-written: no temporary file (`.tmp-*`, `*.tmp`) anywhere;
- a SIGTERM is answered with exit 128 + 15 and one line saying how to go on,
  and how long the process took to stop after the signal is recorded.

Where each kill landed is read from the folder it left (epochs committed,
evaluated, exported). The record goes to --out (JSON); the table to stdout.
Not part of the test suite (minutes); tests/test_kill_anywhere.py places
the kills deterministically instead.
"""

import argparse
import csv
import hashlib
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))


def prepare_data(work, seed):
    data = work / "data"
    if not (data / "dataset.json").exists():
        raw = work / "raw"
        for command in (
            ["synth", "--out", raw, "--train", 96, "--test", 0, "--size", 32, "--seed", seed],
            [
                "convert",
                "--csv",
                raw / "train.csv",
                "--images",
                raw / "train",
                "--out",
                data,
                "--shards",
                2,
                "--val-fraction",
                0.25,
                "--seed",
                seed,
            ],
        ):
            subprocess.run(
                [sys.executable, "-m", "data_prep", *map(str, command)],
                cwd=ROOT,
                env=_env(),
                check=True,
                capture_output=True,
            )
    return data


def train_command(data, run, export, epochs):
    return [
        sys.executable,
        "train_keras.py",
        "--data",
        str(data),
        "--model-dir",
        str(run),
        "--epochs",
        str(epochs),
        "--batch-size",
        "8",
        "--width",
        "0.125",
        "--size",
        "32",
        "--export",
        str(export),
    ]


def where_it_landed(run, export):
    """What the killed run left: 'exported', 'evaluated', 'epoch N committed', or 'nothing committed'."""
    from protein_location.core import run_state
    from protein_location.training import checkpoints

    try:
        state = run_state.RunState.read(str(run))
    except ValueError:
        return "run.json unreadable"
    if state is not None and state.status == run_state.EVALUATED:
        versions = [p for p in export.iterdir() if p.name.isdigit()] if export.exists() else []
        return "exported" if versions else "evaluated"
    try:
        epochs = checkpoints.committed_epochs(str(run))
    except Exception as error:  # noqa: BLE001 - a soak records whatever it finds
        return f"backup unreadable ({error})"
    return f"{epochs} epoch(s) committed" if epochs else "nothing committed"


def check_run(run, export, epochs):
    """The problems of a finished run folder ([] when it is right)."""
    from protein_location.core import run_state

    problems = []
    history = list(csv.DictReader((run / "history.csv").open())) if (run / "history.csv").exists() else []
    if [int(row["epoch"]) for row in history] != list(range(epochs)):
        problems.append(f"history epochs {[row['epoch'] for row in history]}")
    values = [float(row["val_auc"]) for row in history]
    best = json.loads((run / "best.json").read_text()) if (run / "best.json").exists() else None
    if best is None or not values:
        problems.append("no best.json")
    else:
        if best["epoch"] != values.index(max(values)) + 1 or abs(best["val_auc"] - max(values)) > 1e-9:
            problems.append(
                f"best.json says epoch {best['epoch']} ({best['val_auc']}), the history's best is epoch "
                f"{values.index(max(values)) + 1} ({max(values)})"
            )
        if best["sha256"] != hashlib.sha256((run / "best.weights.h5").read_bytes()).hexdigest():
            problems.append("best.weights.h5 is not the file best.json describes")
    state = run_state.RunState.read(str(run))
    if state is None or state.status != run_state.EVALUATED:
        problems.append(f"run.json status {state and state.status}")
    versions = sorted(p.name for p in export.iterdir() if p.name.isdigit()) if export.exists() else []
    if len(versions) != 1:
        problems.append(f"export versions {versions}")
    temporaries = [
        str(p)
        for folder in (run, export)
        if folder.exists()
        for p in folder.rglob("*")
        if p.name.startswith(".tmp-") or p.name.endswith(".tmp")
    ]
    if temporaries:
        problems.append(f"temporary files left: {temporaries}")
    if (run / "backup").exists():
        problems.append("backup/ left")
    return problems


def cycle(index, data, work, epochs, full_seconds, rng, tries):
    run, export = work / f"run{index:02d}", work / f"export{index:02d}"
    for folder in (run, export):
        if folder.exists():
            subprocess.run(["rm", "-rf", str(folder)], check=True)
    command = train_command(data, run, export, epochs)
    stop = rng.choice([signal.SIGKILL, signal.SIGTERM])
    instant = rng.uniform(0.0, full_seconds)
    process = subprocess.Popen(
        command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    record = {"run": index, "signal": stop.name, "instant_s": round(instant, 2)}
    try:
        process.wait(timeout=instant)
        record["killed"] = False  # it finished first
    except subprocess.TimeoutExpired:
        sent = time.monotonic()
        process.send_signal(stop)
        stderr = process.communicate(timeout=120)[1]
        record.update(killed=True, returncode=process.returncode, stop_s=round(time.monotonic() - sent, 2))
        if stop == signal.SIGTERM and process.returncode != 0:
            last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
            record["message"] = last
            record["sigterm_ok"] = process.returncode == 128 + signal.SIGTERM and last.startswith(
                "error: stopped by SIGTERM"
            )
    record["landed"] = where_it_landed(run, export)
    for attempt in range(1, tries + 1):
        finished = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True)
        if finished.returncode == 0:
            break
    record["reruns"] = attempt
    record["rerun_returncode"] = finished.returncode
    record["problems"] = (
        check_run(run, export, epochs)
        if finished.returncode == 0
        else [finished.stderr.strip().splitlines()[-1] if finished.stderr.strip() else "rerun failed"]
    )
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="kill cycles")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the tiny run")
    parser.add_argument("--tries", type=int, default=2, help="reruns allowed to finish a killed run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the instants and signals")
    parser.add_argument("--work", default="/tmp/protein-location-soak", help="scratch folder")
    parser.add_argument("--out", default=None, help="JSON record (default: WORK/soak.json)")
    args = parser.parse_args(argv)
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = prepare_data(work, args.seed)
    start = time.monotonic()
    reference = work / "reference"
    subprocess.run(["rm", "-rf", str(reference), str(work / "reference-export")], check=True)
    subprocess.run(
        train_command(data, reference, work / "reference-export", args.epochs),
        cwd=ROOT,
        env=_env(),
        check=True,
        capture_output=True,
    )
    full_seconds = time.monotonic() - start
    print(f"soak: an uninterrupted run takes {full_seconds:.1f} s; {args.runs} cycles, kills uniform over it")
    rng = random.Random(args.seed)
    records = []
    for index in range(args.runs):
        record = cycle(index, data, work, args.epochs, full_seconds, rng, args.tries)
        records.append(record)
        status = "ok" if not record["problems"] else "FAIL: " + "; ".join(record["problems"])
        stop = f", stopped in {record['stop_s']} s" if record.get("killed") else " (finished before the signal)"
        print(
            f"{index:2d} {record['signal']:7s} at {record['instant_s']:5.1f} s{stop}: left {record['landed']}; "
            f"{record['reruns']} rerun(s): {status}"
        )
    sigterms = [r for r in records if r.get("killed") and r["signal"] == "SIGTERM"]
    summary = {
        "runs": len(records),
        "killed": sum(bool(r.get("killed")) for r in records),
        "finished_right": sum(not r["problems"] for r in records),
        "sigterm_answered_in_one_line": sum(bool(r.get("sigterm_ok")) for r in sigterms),
        "sigterms": len(sigterms),
        "sigterm_stop_seconds_max": max((r["stop_s"] for r in sigterms), default=None),
        "landed": {
            place: sum(r["landed"] == place for r in records) for place in sorted({r["landed"] for r in records})
        },
        "uninterrupted_run_s": round(full_seconds, 1),
        "epochs": args.epochs,
        "seed": args.seed,
    }
    out = pathlib.Path(args.out or work / "soak.json")
    out.write_text(json.dumps({"summary": summary, "runs": records}, indent=2))
    print(json.dumps(summary, indent=2))
    return 0 if summary["finished_right"] == len(records) else 1


if __name__ == "__main__":
    sys.exit(main())
