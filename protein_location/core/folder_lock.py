"""One writer per folder: a training's --model-dir, a conversion's --out and
an export base are locked while a command writes them.

    with FolderLock(model_dir, "training"):
        ...

On a local disk (NFS included) the lock is `fcntl.flock` on the file
`.lock` in the folder, which also records the holder (PID, host, command,
start time): the kernel releases it when its process dies however it dies,
so a lock left by a killed command is simply taken over. A second command
is refused in one line (`FolderInUseError`) naming the holder.

On object stores (gs://) there are no advisory locks: the lock is the file
itself, created if absent; one whose process on this machine is gone is
taken over, and one from another machine is refused with the path to remove
if that machine's command is gone. Two commands starting within the same
second on two machines can both get it (no atomic create through
tf.io.gfile); docs/fault-tolerance.md says so.

A process may lock a folder it already holds (re-entrant).
"""

import datetime
import json
import os
import posixpath
import sys

import tensorflow as tf

from protein_location.core import output_files
from protein_location.core.errors import FolderInUseError

LOCK_NAME = ".lock"

# Folders this process holds: real path -> [lock, depth].
_held = {}


class FolderLock:
    """The lock of `folder` for `what` ("training", "conversion", "export"), as a context manager."""

    def __init__(self, folder, what, create=True):
        """`create=False`: a folder that does not exist is not made (a reader's
        lock: there is nothing in it to protect)."""
        self.folder, self.what, self.create = folder, what, create
        self.path = posixpath.join(folder, LOCK_NAME)
        self._descriptor = None
        self._skipped = False

    def _key(self):
        return os.path.realpath(self.folder) if output_files.is_local(self.folder) else self.folder

    def __enter__(self):
        key = self._key()
        if key in _held:
            _held[key][1] += 1
            return self
        if not self.create and not tf.io.gfile.isdir(self.folder):
            self._skipped = True
            return self
        tf.io.gfile.makedirs(self.folder)
        if output_files.is_local(self.folder):
            self._acquire_local()
        else:
            self._acquire_remote()
        _held[key] = [self, 1]
        return self

    def __exit__(self, *exc_info):
        if self._skipped:
            return
        key = self._key()
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _held[key]
            entry[0]._release()

    def holder(self):
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        return {
            "pid": os.getpid(),
            "host": output_files.host_name(),
            "command": self.what,
            "argv": " ".join(sys.argv),
            "started": started,
        }

    def _refuse(self, holder):
        who = (
            f"PID {holder.get('pid', '?')} on {holder.get('host', '?')}"
            if isinstance(holder, dict)
            else "another process"
        )
        since = f", since {holder['started']}" if isinstance(holder, dict) and holder.get("started") else ""
        what = holder.get("command", "a command") if isinstance(holder, dict) else "a command"
        raise FolderInUseError(
            f"{self.folder}: in use by {what} ({who}{since}; lock {self.path}); wait for it to "
            "finish or stop it, then run this command again"
        )

    # --- a local folder: flock ----------------------------------------------------------------------

    def _acquire_local(self):
        import fcntl

        for _ in range(100):
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(descriptor)
                os.close(descriptor)
                self._refuse(holder)
            # The holder before us may have removed the file as it let go: lock the file that is there now.
            try:
                same = os.fstat(descriptor).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(descriptor, 0)
                os.write(descriptor, json.dumps(self.holder()).encode())
                self._descriptor = descriptor
                return
            os.close(descriptor)
        raise FolderInUseError(f"{self.folder}: could not take the lock {self.path} (others take and drop it)")

    # --- an object store: a lock file --------------------------------------------------------------

    def _acquire_remote(self):
        if tf.io.gfile.exists(self.path):
            try:
                with tf.io.gfile.GFile(self.path, "r") as f:
                    holder = json.loads(f.read())
            except (ValueError, tf.errors.OpError):
                holder = {}
            gone = holder.get("host") == output_files.host_name() and not output_files.process_alive(
                int(holder.get("pid", 0))
            )
            if not gone:
                self._refuse(holder)
        output_files.write_atomic(self.path, json.dumps(self.holder()))

    def _release(self):
        if self._descriptor is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self._descriptor)  # closing drops the flock
            self._descriptor = None
        else:
            output_files.remove_quietly(self.path)


def _read_holder(descriptor):
    try:
        return json.loads(os.pread(descriptor, 4096, 0).decode() or "{}")
    except (ValueError, OSError):
        return {}
