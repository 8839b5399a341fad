"""What checking a dataset's shards before a run costs (issue #27): the
check training and `predict --records` do (each shard's size and the sha256
of its first and last 64 KiB, `manifest.check_shard_files`) against the full
sha256 of every byte (`data_prep verify`), on shards of the default size.

    python -m bench.shard_check                        # 40 shards of 150 MB (6 GB) in /tmp
    python -m bench.shard_check --shards 210 --shard-mb 150 --work /data/scratch   # Kaggle 2018 at 512 px

The shards hold random bytes (the cost does not depend on what they hold).
With --cold, the page cache is dropped before each pass (root, Linux), so
the bytes come from the disk as they would on a dataset larger than memory.
"""

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from protein_location.core import manifest as manifest_lib  # noqa: E402


def write_shards(folder, count, shard_mb, seed=0):
    """Shard files of random bytes and their dataset.json entries."""
    folder.mkdir(parents=True, exist_ok=True)
    block = np.random.default_rng(seed).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    entries = []
    for index in range(count):
        name = manifest_lib.shard_name("train", index, count)
        path = folder / name
        if not path.exists() or path.stat().st_size != int(shard_mb * (1 << 20)):
            with open(path, "wb") as f:
                f.write(index.to_bytes(8, "little"))  # each shard differs
                for _ in range(int(shard_mb)):
                    f.write(block)
                f.truncate(int(shard_mb * (1 << 20)))
        entries.append(
            {"file": name, "num_bytes": path.stat().st_size, "ends_sha256": manifest_lib.shard_ends_sha256(str(path))}
        )
    return entries


def drop_page_cache():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def timed(function, cold):
    if cold:
        drop_page_cache()
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=40)
    parser.add_argument("--shard-mb", type=float, default=150.0, help="convert's default --shard-mb")
    parser.add_argument("--work", default="/tmp/protein-location-shard-check")
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each pass (root)")
    parser.add_argument("--out", default=None, help="JSON record")
    args = parser.parse_args(argv)
    folder = pathlib.Path(args.work)
    entries = write_shards(folder, args.shards, args.shard_mb)
    data_dir = str(folder)
    passes = {
        "size_only": lambda: [os.stat(folder / e["file"]).st_size for e in entries],
        "size_and_ends (training, predict)": lambda: manifest_lib.check_shard_files(data_dir, entries),
        "full_sha256 (data_prep verify)": lambda: [manifest_lib.file_sha256(str(folder / e["file"])) for e in entries],
    }
    total_gb = sum(e["num_bytes"] for e in entries) / 1e9
    record = {
        "shards": len(entries),
        "shard_mb": args.shard_mb,
        "total_gb": round(total_gb, 2),
        "cold": args.cold,
        "seconds": {},
    }
    for name, function in passes.items():
        record["seconds"][name] = round(timed(function, args.cold), 4)
    full = record["seconds"]["full_sha256 (data_prep verify)"]
    ends = record["seconds"]["size_and_ends (training, predict)"]
    record["ends_ms_per_shard"] = round(1e3 * ends / len(entries), 3)
    record["sha256_mb_per_s"] = round(total_gb * 1e3 / full, 1)
    for name, seconds in record["seconds"].items():
        print(f"{name:36s} {seconds:9.3f} s  ({1e3 * seconds / len(entries):8.3f} ms per shard)")
    print(
        f"{len(entries)} shards, {total_gb:.2f} GB{' (cold page cache)' if args.cold else ''}: the check before a "
        f"run costs {ends / full:.2%} of a full sha256 ({record['sha256_mb_per_s']} MB/s)"
    )
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
