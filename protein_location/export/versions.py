"""The version folders of an export base, as TF Serving reads them: `1/`,
`2/`, ..., each appearing only when complete.

An export is written under a name TF Serving ignores
(`.tmp-<N>-<host>-<pid>-<random>`: it loads only all-digit folders), then
renamed to the next free version number (`publish`). On a local disk the
rename is atomic. On `gs://` and other object stores a folder rename is not
(objects are copied one by one): there the files are copied with
`saved_model.pb` last, so a reader that finds it finds the variables too,
and the temporary folder is removed after. A temporary folder left by a
killed export on this machine is removed by the next export to the same
base (`remove_interrupted_exports`); one from another machine is left alone.
"""

import os
import posixpath
import re
import secrets

import tensorflow as tf

from protein_location.core import output_files
from protein_location.core.errors import ExportError

# TF Serving loads the all-digit folders of a base; everything else is ignored.
VERSION_NAME = re.compile(r"[0-9]+")
STAGING_PREFIX = ".tmp-"
# .tmp-<version>-<host>-<pid>-<random>: the export that writes it, to tell a live one from a killed one.
STAGING_NAME = re.compile(r"\.tmp-([0-9]+)-(.*)-([0-9]+)-([0-9a-f]{8})")


def version_dirs(export_base):
    """{version number: path} of the SavedModels under an export base."""
    if not tf.io.gfile.isdir(export_base):
        return {}
    names = [n.rstrip("/") for n in tf.io.gfile.listdir(export_base)]
    return {int(n): posixpath.join(export_base, n) for n in names if VERSION_NAME.fullmatch(n)}


def resolve_saved_model(path):
    """An export base (highest version wins, as TF Serving does) or a version folder -> the SavedModel folder."""
    versions = version_dirs(path)
    return versions[max(versions)] if versions else path


def make_staging_dir(export_base, version):
    name = f"{STAGING_PREFIX}{version}-{output_files.host_name()}-{os.getpid()}-{secrets.token_hex(4)}"
    path = posixpath.join(export_base, name)
    tf.io.gfile.makedirs(path)
    return path


def remove_interrupted_exports(export_base):
    """Removes the temporary folders under `export_base` of exports on this
    machine whose process is gone (killed while writing); returns their paths.
    Those of live exports, and of other machines, are left alone."""
    if not tf.io.gfile.isdir(export_base):
        return []
    removed = []
    for name in sorted(n.rstrip("/") for n in tf.io.gfile.listdir(export_base)):
        match = STAGING_NAME.fullmatch(name)
        if match and match[2] == output_files.host_name() and not output_files.process_alive(int(match[3])):
            path = posixpath.join(export_base, name)
            remove_dir(path)
            removed.append(path)
    return removed


def remove_dir(path):
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)


def publish(staging, export_base):
    """Moves the complete folder `staging` to the next free version number of
    `export_base`; returns its path. A number another export takes meanwhile
    is skipped."""
    for _ in range(100):
        path = posixpath.join(export_base, str(max(version_dirs(export_base), default=0) + 1))
        if _move_dir(staging, path):
            return path
    raise ExportError(
        f"{export_base}: no free version number after 100 tries (other exports writing?); "
        f"the export is left in {staging}"
    )


def _move_dir(source, target):
    """Renames the folder `source` to `target`, which must not exist; False if it does.

    A local rename is atomic. Other file systems (gs://, ram://) get a copy,
    `saved_model.pb` last, then the source is removed.
    """
    if "://" not in source:
        try:
            tf.io.gfile.rename(source, target, overwrite=False)
        except tf.errors.AlreadyExistsError:
            return False
        except tf.errors.OpError:
            if tf.io.gfile.exists(target):  # a non-empty folder: rename(2) says ENOTEMPTY
                return False
            raise
        return True
    if tf.io.gfile.exists(target):
        return False
    files = [posixpath.join(folder, name) for folder, _, names in tf.io.gfile.walk(source) for name in names]
    files.sort(key=lambda f: posixpath.basename(f) == "saved_model.pb")
    for source_file in files:
        target_file = target + source_file[len(source) :]
        tf.io.gfile.makedirs(posixpath.dirname(target_file))
        tf.io.gfile.copy(source_file, target_file)
    tf.io.gfile.rmtree(source)
    return True
