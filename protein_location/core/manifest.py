"""dataset.json: what a converted dataset holds, beside its TFRecord shards.

Written last by `data_prep convert` (its presence means the dataset is
complete) and read by every consumer of the shards.

`DatasetManifest` owns the file both ways. A manifest is checked as it is loaded: every shard's `file` must be a shard
name as `shard_name` writes it (`{split}-NNNNN-of-NNNNN.tfrecord`), so an
entry like `../../etc/passwd` or `/etc/passwd` is refused before any file
beside dataset.json is opened.
"""

import dataclasses
import hashlib
import json
import posixpath
import re

from protein_location.core import file_system, labels, records
from protein_location.core.errors import ManifestError
from protein_location.core.json_files import write_json_atomic
from protein_location.core.lazy_tensorflow import tf

MANIFEST_NAME = "dataset.json"
SPLITS = ("train", "val", "test")


def shard_name(split, index, count):
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


# What `shard_name` writes: no separator, no "..", nothing absolute.
SHARD_NAME = re.compile(r"(?:%s)-[0-9]{5,}-of-[0-9]{5,}\.tfrecord" % "|".join(SPLITS))


def check_shard_file(data_dir, split, shard):
    """The shard entry's `file`, refused (ManifestError naming dataset.json and
    the entry) unless it is a name `shard_name` writes: a file in `data_dir`."""
    name = shard.get("file") if isinstance(shard, dict) else None
    if not isinstance(name, str) or not SHARD_NAME.fullmatch(name):
        entry = repr(name) if isinstance(shard, dict) else repr(shard)
        example = shard_name(split if split in SPLITS else SPLITS[0], 0, 1)
        raise ManifestError(
            f"{posixpath.join(data_dir, MANIFEST_NAME)}: the {split!r} split lists shard file "
            f"{entry}, not a shard name like {example}"
        )
    return name


# The fields of dataset.json in the order the file holds them; the optional
# ones are left out of the file when they are None.
REQUIRED_FIELDS = ("image_size", "splits")
OPTIONAL_FIELDS = ("folds", "channel_mean", "channel_std", "num_errors")


@dataclasses.dataclass(frozen=True)
class DatasetManifest:
    """dataset.json: what a converted dataset holds, read once (`read`) and
    passed along; written by `data_prep convert` (`write`).

    `splits` is {split: {"num_examples", "label_counts", "shards": [entry]}},
    each shard entry {"file", "num_examples", "sha256", "num_bytes",
    "ends_sha256", "label_counts"[, "fold"]} (docs/formats.md). `data_dir` is
    the folder it was read from (or is written to), not part of the file.

    Earlier files are read here and nowhere else: a file without
    `schema_version` is version 1, one without a label set holds the 28
    classes of 2018, one without `image_format` holds PNG records.
    """

    data_dir: str
    image_size: int
    splits: dict
    schema_version: int = records.SCHEMA_VERSIONS[records.DEFAULT_IMAGE_FORMAT]
    label_set: str = labels.HPA2018.name
    class_names: tuple = labels.HPA2018.class_names
    channels: tuple = labels.CHANNELS
    image_format: str = records.DEFAULT_IMAGE_FORMAT
    sources: tuple = ()
    split: dict = dataclasses.field(default_factory=dict)
    folds: int | None = None
    fingerprint: str | None = None
    channel_mean: tuple | None = None
    channel_std: tuple | None = None
    num_errors: int | None = None

    @property
    def path(self):
        return posixpath.join(self.data_dir, MANIFEST_NAME)

    @property
    def num_classes(self):
        return len(self.class_names)

    @classmethod
    def read(cls, data_dir):
        """dataset.json of `data_dir`, checked (`from_json`); ManifestError in one
        line when it is missing, not JSON or not a manifest this code reads."""
        path = posixpath.join(data_dir, MANIFEST_NAME)
        if not tf.io.gfile.exists(path):
            raise ManifestError(
                f"{data_dir}: no {MANIFEST_NAME} here; convert a dataset first with `python -m data_prep convert`"
            )
        with tf.io.gfile.GFile(path, "r") as f:
            try:
                content = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ManifestError(f"{path}: not valid JSON ({error})") from None
        return cls.from_json(data_dir, content)

    @classmethod
    def from_json(cls, data_dir, content):
        """The manifest `content` (parsed JSON) describes, checked for what
        consumers rely on before they join names to `data_dir`: an object of a
        schema version this code reads, whose splits hold lists of shards with
        valid file names (`check_shard_file`)."""
        path = posixpath.join(data_dir, MANIFEST_NAME)
        splits = content.get("splits", {}) if isinstance(content, dict) else None
        if not isinstance(splits, dict):
            raise ManifestError(f'{path}: not a dataset manifest (expected an object with "splits")')
        version = content.get("schema_version", 1)
        if version not in records.READABLE_SCHEMA_VERSIONS:
            readable = " and ".join(str(v) for v in records.READABLE_SCHEMA_VERSIONS)
            raise ManifestError(
                f"{path}: records of schema version {version}; this protein-location reads {readable} "
                "(upgrade it, or convert the raw images again)"
            )
        for split, entry in splits.items():
            shards = entry.get("shards") if isinstance(entry, dict) else None
            if not isinstance(shards, list):
                raise ManifestError(f"{path}: the {split!r} split has no list of shards")
            for shard in shards:
                check_shard_file(data_dir, split, shard)
        if not isinstance(content.get("image_size"), int):
            raise ManifestError(f"{path}: no image_size (the side its records are stored at)")
        fields = {field.name for field in dataclasses.fields(cls)} - {"data_dir"}
        known = {key: value for key, value in content.items() if key in fields}
        for key in ("class_names", "channels", "sources", "channel_mean", "channel_std"):
            if known.get(key) is not None:
                known[key] = tuple(known[key])
        if "class_names" in content and "label_set" not in content:
            known["label_set"] = labels.label_set_of_classes(known["class_names"])
        known["schema_version"] = version
        return cls(data_dir=data_dir, **known)

    def to_json(self):
        """The file's content: its fields in the order `data_prep convert` has
        always written them, None optional fields left out."""
        content = {
            "schema_version": self.schema_version,
            "label_set": self.label_set,
            "class_names": list(self.class_names),
            "channels": list(self.channels),
            "image_format": self.image_format,
            "image_size": self.image_size,
            "sources": list(self.sources),
            "split": self.split,
            **({"folds": self.folds} if self.folds else {}),
            "splits": self.splits,
            "fingerprint": self.fingerprint,
        }
        for key in ("channel_mean", "channel_std"):
            if getattr(self, key) is not None:
                content[key] = list(getattr(self, key))
        if self.num_errors is not None:
            content["num_errors"] = self.num_errors
        return content

    def write(self):
        """Writes dataset.json into `data_dir` atomically: the last file of a conversion."""
        write_json_atomic(self.path, self.to_json())

    def shards(self, split, fold=None):
        """The shard entries of a split, in manifest order.

        With `fold` (a dataset converted with --folds), "val" is that fold of the
        train split and "train" is every other fold.
        """
        if fold is not None:
            if not self.folds:
                raise ManifestError(f"{self.data_dir}: `fold` needs a dataset converted with --folds")
            if not 0 <= fold < self.folds:
                raise ManifestError(f"{self.data_dir}: `fold` {fold} is outside 0-{self.folds - 1}")
            return [s for s in self.splits["train"]["shards"] if (s["fold"] == fold) == (split == "val")]
        if split not in self.splits:
            present = ", ".join(self.splits) or "none"
            hint = ""
            if split == "val":
                hint = "; pick one with --fold" if self.folds else "; convert with --val-fraction above 0"
            raise ManifestError(f"{self.data_dir}: the dataset has no {split!r} split (splits: {present}){hint}")
        return self.splits[split]["shards"]

    def summary(self, split, fold=None):
        """(shard paths, example count, per-class label counts) of a split."""
        shards = self.shards(split, fold)
        label_counts = [sum(counts) for counts in zip(*[s["label_counts"] for s in shards])] if shards else []
        return (
            [posixpath.join(self.data_dir, s["file"]) for s in shards],
            sum(s["num_examples"] for s in shards),
            label_counts,
        )

    def num_examples(self, split, fold=None):
        return self.summary(split, fold)[1]


def file_sha256(path):
    """sha256 hex digest of a file, read in 1 MiB chunks (`file_system`: local, gs://)."""
    digest = hashlib.sha256()
    with file_system.open_file(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# A shard's first and last bytes: what `shard_ends_sha256` digests. Two reads
# per shard whatever its size; a replaced shard differs in its first record
# (another Id) even where its size does not (raw records are all one size).
ENDS_BYTES = 1 << 16


def shard_ends_sha256(path):
    """sha256 of a file's first and last ENDS_BYTES (all of it when it is
    smaller than twice that), read through `file_system`."""
    digest = hashlib.sha256()
    size = file_system.size(path)
    with file_system.open_file(path, "rb") as f:
        digest.update(f.read(ENDS_BYTES))
        if size > 2 * ENDS_BYTES:
            f.seek(size - ENDS_BYTES)
        digest.update(f.read())
    return digest.hexdigest()


def repair_hint(data_dir):
    return (
        f"check every shard with `python -m data_prep verify {data_dir}`, and rewrite the damaged ones with the "
        "`python -m data_prep convert` command that made the dataset plus --resume"
    )


def shard_file_problem(path, shard, ends=True):
    """What is wrong with a shard file against its dataset.json entry, cheaply
    (its size, and with `ends` the digest of its ends), or None. Entries
    written before dataset.json recorded sizes are checked for existence only."""
    if not tf.io.gfile.exists(path):
        return f"missing (listed in {MANIFEST_NAME})"
    if "num_bytes" in shard:
        size = tf.io.gfile.stat(path).length
        if size != shard["num_bytes"]:
            return f"{size} bytes, {MANIFEST_NAME} records {shard['num_bytes']}: truncated or replaced"
    if ends and "ends_sha256" in shard and shard_ends_sha256(path) != shard["ends_sha256"]:
        return f"its first and last bytes differ from what {MANIFEST_NAME} records: replaced or overwritten"
    return None


def check_shard_files(data_dir, shards):
    """Every shard entry of `shards` has its file in `data_dir`, of the size and
    ends digest dataset.json records (`shard_file_problem`); ManifestError
    naming the first that does not. Several files are checked at once: on
    gs:// each check is a request."""
    import concurrent.futures

    paths = [posixpath.join(data_dir, shard["file"]) for shard in shards]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, max(len(paths), 1))) as pool:
        problems = list(pool.map(shard_file_problem, paths, shards))
    for path, problem in zip(paths, problems):
        if problem is not None:
            raise ManifestError(f"{path}: {problem}; {repair_hint(data_dir)}")


def find_damaged_shard(data_dir, shards):
    """(path, problem) of the first shard of `shards` that is missing, of the
    wrong size or ends, unreadable (a failed record CRC, a cut record), or
    holding another number of records than dataset.json says; None if every
    one reads whole. Reads every record: for diagnosis after a read error."""
    for shard in shards:
        path = posixpath.join(data_dir, shard["file"])
        problem = shard_file_problem(path, shard)
        if problem is not None:
            return path, problem
        count = 0
        try:
            for _ in tf.data.TFRecordDataset(path):
                count += 1
        except tf.errors.OpError as error:
            return path, f"unreadable after {count} records ({op_error_line(error)})"
        if count != shard["num_examples"]:
            return path, f"{count} records, {MANIFEST_NAME} records {shard['num_examples']}"
    return None


def op_error_line(error):
    """A TensorFlow error's own words in one line, without the function and op
    names TensorFlow wraps them in ("corrupted record at 559750")."""
    text = re.sub(r"\{\{[^}]*\}\}", "", error.message or "")
    text = re.sub(r"\[Op:[^\]]*\].*", "", text)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("[[")]
    return lines[0] if lines else type(error).__name__
