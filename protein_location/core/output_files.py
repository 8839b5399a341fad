"""Files a command writes appear whole or not at all.

Every file is written under a temporary name in its own folder
(`.tmp-<host>-<pid>-<random>-<name>`: the same folder, so the final rename
stays on one file system and is atomic on a local disk), flushed to disk,
and renamed into place. A write that fails (a full disk, a folder that
turned read-only) or is interrupted removes its temporary file and raises
`OutputError`, one line naming the file; the previous version of the file,
if any, is left as it was. A process killed with SIGKILL leaves its
temporary file behind, under a name no reader looks at;
`remove_stale_temporaries` clears those of dead processes of this machine.

Output folders are checked before a command starts its work
(`check_output_dir`, `check_output_file`), so a missing or unwritable one
costs nothing.
"""

import contextlib
import errno
import os
import posixpath
import re
import secrets
import socket

import numpy as np

from protein_location.core import file_system
from protein_location.core.errors import OutputError
from protein_location.core.lazy_tensorflow import tf

TEMPORARY_PREFIX = ".tmp-"
# .tmp-<host>-<pid>-<8 hex>-<final name>: the writer, to tell a live one from a killed one.
TEMPORARY_NAME = re.compile(r"\.tmp-(?P<host>.+)-(?P<pid>[0-9]+)-(?P<token>[0-9a-f]{8})-(?P<name>.+)")

# What errno (or TensorFlow's message) means for the user, for the errors of writing a file.
DISK_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system or the process's limit",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error",
}
DISK_MESSAGES = {os.strerror(number).lower(): reason for number, reason in DISK_ERRNOS.items()}
RETRY_HINT = "free space (or fix the folder's permissions) and run the same command again"


def host_name():
    """This machine's name as it goes into temporary and lock names."""
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "host"


def process_alive(pid):
    """Whether a process of this machine with `pid` still runs."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


is_local = file_system.is_local


def temporary_path(path):
    """A name beside `path` for writing it: hidden, unique, ending in `path`'s own name
    (Keras picks the format from the ending: `.weights.h5`, `.keras`)."""
    folder, name = posixpath.split(path)
    return posixpath.join(folder, f"{TEMPORARY_PREFIX}{host_name()}-{os.getpid()}-{secrets.token_hex(4)}-{name}")


def disk_error_reason(error):
    """The user's words for an error of writing a file (a full disk, a
    read-only or forbidden folder), or None for any other error."""
    if isinstance(error, OSError) and error.errno in DISK_ERRNOS:
        return DISK_ERRNOS[error.errno]
    if isinstance(error, (OSError, RuntimeError)) or file_system.is_op_error(error):
        text = str(error).lower()
        for message, reason in DISK_MESSAGES.items():
            if message in text:
                return reason
    return None


def sync_file(path):
    """Flushes a closed local file to the disk, so that the rename publishes its bytes."""
    if is_local(path):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def remove_quietly(path):
    try:
        if file_system.exists(path):
            file_system.remove(path)
    except Exception as error:  # an OSError, or tf.io.gfile's OpError
        if not (isinstance(error, OSError) or file_system.is_op_error(error)):
            raise


def check_free_space(path, needed_bytes):
    """Refuses (OutputError) to start writing about `needed_bytes` to the local
    file `path` when its file system has less free: h5py, which writes Keras'
    weights, does not recover from a disk that fills up in the middle of a
    file (every later close fails, and the interpreter can crash at exit)."""
    if not is_local(path) or not needed_bytes:
        return
    folder = os.path.dirname(os.path.abspath(path))
    try:
        stats = os.statvfs(folder)
    except OSError:
        return
    free = stats.f_bavail * stats.f_frsize
    if free < needed_bytes:
        raise OutputError(
            f"{path}: cannot write it: no space left on device (it needs about "
            f"{needed_bytes / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free); {RETRY_HINT}"
        )


def weights_bytes(model):
    """About what Keras writes for `model` (`save_weights`, model.keras): its
    variables and, once built, its optimizer's, each with about 2 KiB of HDF5
    around it (measured: 1-2 KiB)."""
    variables = list(model.weights)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        variables += list(optimizer.variables)
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize + 2048 for v in variables) + (256 << 10)


@contextlib.contextmanager
def atomic_path(path, needed_bytes=None):
    """Yields a temporary path beside `path` for a library that writes by name
    (Keras, h5py); renames it to `path` when the block ends, or removes it if
    the block raises. A write that fails for lack of space or permission
    raises OutputError naming `path`; with `needed_bytes`, one that would not
    fit is not started (`check_free_space`)."""
    check_free_space(path, needed_bytes)
    temporary = temporary_path(path)
    try:
        yield temporary
        sync_file(temporary)
        file_system.rename(temporary, path)
    except BaseException as error:
        abandon_write(error, path, temporary)
        raise


def abandon_write(error, path, *temporaries):
    """After a write of `path` through the files `temporaries` failed with
    `error`: removes them, and raises OutputError naming `path` when the
    disk is full or the folder forbids it. For any other error it returns,
    and the caller raises `error` as it is."""
    reason = disk_error_reason(error)
    for temporary in temporaries:
        if temporary is not None:
            if reason is not None:
                release_failed_writer(error, temporary)
            remove_quietly(temporary)
    if reason is not None:
        raise OutputError(f"{path}: cannot write it: {reason}; nothing was left half-written; {RETRY_HINT}") from None


def release_failed_writer(error, temporary=None):
    """Lets a library whose write failed for lack of space close its file now.

    Keras' weights writer leaves its h5py file open when a write fails; h5py
    closes it when the object is collected, flushing again, and a flush that
    fails again then (at exit, the disk still full) crashes the interpreter
    (segmentation fault). So the half-written file `temporary`, when known, is
    emptied first (its space is what the flush needs) and the failed call's
    frames, which hold the writer, are dropped now.
    """
    import gc

    if temporary is not None and is_local(temporary) and os.path.exists(temporary):
        try:
            os.truncate(temporary, 0)
        except OSError:
            pass
    seen = set()
    while error is not None and id(error) not in seen:  # the frames of every exception in the chain
        seen.add(id(error))
        error.__traceback__ = None
        error = error.__cause__ or error.__context__
    gc.collect()


@contextlib.contextmanager
def atomic_open(path, mode="w"):
    """A file object (`file_system.open_file`: local, gs://, ram://) whose content appears at `path`
    only when the block ends without error (`atomic_path`)."""
    with atomic_path(path) as temporary, file_system.open_file(temporary, mode) as f:
        yield f


def write_atomic(path, content):
    """Writes `content` (str or bytes) to `path`, whole or not at all."""
    with atomic_open(path, "wb" if isinstance(content, bytes) else "w") as f:
        f.write(content)


def remove_stale_temporaries(folder):
    """Removes the temporary files in `folder` of writers on this machine that
    are gone (killed mid-write); returns their paths. Others are left alone."""
    if not tf.io.gfile.isdir(folder):
        return []
    removed = []
    for name in tf.io.gfile.listdir(folder):
        match = TEMPORARY_NAME.fullmatch(name.rstrip("/"))
        if match and match["host"] == host_name() and not process_alive(int(match["pid"])):
            path = posixpath.join(folder, name.rstrip("/"))
            if not tf.io.gfile.isdir(path):
                remove_quietly(path)
                removed.append(path)
    return removed


def check_output_dir(path, flag):
    """A command's output folder `path` (given by `flag`) can be written: a small
    file is written and removed in it, or, when it does not exist yet, in
    the nearest folder above it that does (where it will be made). So a
    folder that cannot be written (or a full disk) fails here, in one line,
    before any work, and nothing is created."""
    if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
        raise OutputError(f"{path}: {flag} must be a folder, and this is a file")
    where = path
    if is_local(path):
        where = os.path.abspath(path)
        while not os.path.exists(where) and os.path.dirname(where) != where:
            where = os.path.dirname(where)
        if not os.path.isdir(where):
            raise OutputError(f"{path}: cannot make the {flag} folder: {where} is a file")
    _probe_write(where, flag)


def check_output_file(path, flag):
    """The folder a command will write the file `path` into (`flag`) must exist
    and take a small file; checked before any work, in one line."""
    folder = posixpath.dirname(path) or "."
    if tf.io.gfile.isdir(path):
        raise OutputError(f"{path}: {flag} must be a file name, and this is a folder")
    if not tf.io.gfile.isdir(folder):
        raise OutputError(f"{path}: the folder {folder} does not exist; create it or pick another {flag}")
    _probe_write(folder, flag)


def _probe_write(folder, flag):
    probe = temporary_path(posixpath.join(folder, "write-test"))
    try:
        with tf.io.gfile.GFile(probe, "w") as f:
            f.write("a write test; removed at once\n")
        tf.io.gfile.remove(probe)
    except (OSError, tf.errors.OpError) as error:
        remove_quietly(probe)
        reason = disk_error_reason(error) or _first_line(error)
        raise OutputError(f"{folder}: cannot write in the {flag} folder: {reason}") from None


def _first_line(error):
    text = error.message if file_system.is_op_error(error) else str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
