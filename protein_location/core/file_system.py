"""Files by path, wherever they are: Python's own calls for local paths,
tf.io.gfile for the others (gs://, ram://, any file system TensorFlow has),
with TensorFlow imported only when such a path comes.

So the code that reads stain files and writes shards runs without
TensorFlow: a conversion worker starts as a bare interpreter (about 0.4 s,
against 6 s with TensorFlow; docs/scaling-out.md, "Scaling out the data") and loads
TensorFlow only if an image needs its decoders or resize.
"""

import os
import sys


def is_local(path):
    return "://" not in path


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def exists(path):
    return os.path.exists(path) if is_local(path) else _gfile().exists(path)


def isdir(path):
    return os.path.isdir(path) if is_local(path) else _gfile().isdir(path)


def listdir(path):
    return os.listdir(path) if is_local(path) else _gfile().listdir(path)


def makedirs(path):
    if is_local(path):
        os.makedirs(path, exist_ok=True)
    else:
        _gfile().makedirs(path)


def open_file(path, mode="r"):
    """A file object, `open` for a local path (text in UTF-8, as tf.io.gfile reads it), GFile otherwise."""
    if not is_local(path):
        return _gfile().GFile(path, mode)
    return open(path, mode) if "b" in mode else open(path, mode, encoding="utf-8")


def size(path):
    return os.path.getsize(path) if is_local(path) else _gfile().stat(path).length


def rename(source, target):
    """Moves `source` to `target`, replacing it (one atomic rename on a local disk)."""
    if is_local(source) and is_local(target):
        os.replace(source, target)
    else:
        _gfile().rename(source, target, overwrite=True)


def remove(path):
    if is_local(path):
        os.remove(path)
    else:
        _gfile().remove(path)


def is_op_error(error):
    """True for a TensorFlow OpError (what tf.io.gfile raises); never true,
    and nothing imported, in a process that has not loaded TensorFlow."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(error, tf.errors.OpError)
