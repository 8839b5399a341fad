"""The errors of bad requests and bad input: one line each, naming the flag, file or Id."""


class TrainError(ValueError):
    """A training request that cannot run as asked (one line, names the flag)."""


class ExportError(ValueError):
    """An export that cannot be written as asked (one line naming the file or flag)."""


class SourceError(ValueError):
    """Bad raw input: one line naming the Id, the file and the problem."""

    def __init__(self, problem, image_id=None, path=None):
        where = [f"Id {image_id}" if image_id is not None else None, path]
        super().__init__(": ".join([w for w in where if w] + [problem]))
        self.image_id, self.path, self.problem = image_id, path, problem
