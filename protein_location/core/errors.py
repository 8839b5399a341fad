"""The errors of bad requests and bad input, one hierarchy: every one is a
`ProteinLocationError`, printed by the command-line tools as one line
(`error: ...`, exit code 1) naming the flag, file or Id and what to do.

They subclass ValueError: a bad request is a bad value.

A library message names a function's argument in backticks (`arch`), so
that it reads right from Python; the command line prints the same message
through `naming_flags`, where `arch` becomes --arch when the command has
that flag.
"""

import re

# An argument named in a message: one identifier in backticks (a command in backticks has spaces).
_ARGUMENT = re.compile(r"`([a-z][a-z0-9_]*)`")


class ProteinLocationError(ValueError):
    """The base of every error this project raises for bad input or a bad request."""


class SourceError(ProteinLocationError):
    """Bad raw input: one line naming the Id, the file and the problem."""

    def __init__(self, problem, image_id=None, path=None):
        where = [f"Id {image_id}" if image_id is not None else None, path]
        super().__init__(": ".join([w for w in where if w] + [problem]))
        self.image_id, self.path, self.problem = image_id, path, problem

    def __reduce__(self):
        # Crosses process boundaries (conversion workers) with its fields.
        return type(self), (self.problem, self.image_id, self.path)


class ManifestError(ProteinLocationError):
    """A dataset folder without a usable dataset.json."""


class TrainError(ProteinLocationError):
    """A training request that cannot run as asked (one line, names the flag)."""


class ExportError(ProteinLocationError):
    """An export that cannot be written as asked (one line naming the file or flag)."""


class PredictError(ProteinLocationError):
    """Bad prediction or scoring input (one line naming the file)."""


class DataPrepError(ProteinLocationError):
    """A `data_prep` request (synth, convert, split flags) that cannot run as asked."""


class VerifyError(ProteinLocationError):
    """A converted dataset whose shards do not match its dataset.json."""


class WeightsError(ProteinLocationError):
    """Pretrained weights that cannot be had as asked (one line naming the file or the download)."""


class OutputError(ProteinLocationError):
    """An output that cannot be written (a full disk, a missing or read-only folder): one line naming the path."""


class FolderInUseError(ProteinLocationError):
    """An output folder another live command is writing (its lock names the holder)."""


class CellsError(ProteinLocationError):
    """Bad single-cell input (masks, label images, per-cell truth): one line naming the file or Id."""


def naming_flags(message, flags):
    """`message` as a command line says it: each argument named in backticks
    that is one of `flags` ({argument: its flag}, the command's) becomes its
    flag; any other backticked word (a library's own, quoted inside) stays."""
    return _ARGUMENT.sub(lambda found: flags.get(found.group(1), found.group(0)), str(message))
