"""A run's output folder: one writer at a time, scratch names of its own, inputs kept apart.

Two runs writing one folder overwrite each other's files, so ``finetune`` and ``pretrain`` first take the
folder's lock (:func:`lock_folder`): an advisory ``flock`` on ``.bertmini-run.lock``, which the OS releases
when the process ends, crash included, so a lock never goes stale. The file records the holder (pid, host,
start time, command) for the message the next run prints.

Atomic saves write a temporary sibling and rename it into place. The temporary names (:func:`temp_path`)
carry the writer's pid and a random part, so no two writers share one, and start with ``.tmp-`` or ``.old-``
so that what a killed save leaves behind is recognized and deleted by :func:`sweep_temps` at the next start,
once the lock is held (no live writer can own it then). They are made with ``os.mkdir`` and plain ``open``,
not ``tempfile``, whose 0700 folders and 0600 files would make every saved model private to its creator.
"""
from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not guarded there
    fcntl = None

__all__ = ["FolderInUse", "lock_folder", "temp_path", "temp_dir", "sweep_temps", "delete", "refuse_overlap",
           "LOCK_NAME", "TEMP_PREFIXES"]

LOCK_NAME = ".bertmini-run.lock"
TEMP_PREFIXES = (".tmp-", ".old-")


class FolderInUse(OSError):
    """Another process holds the run folder's lock."""


def _holder(fd: int) -> str:
    """Who holds the lock, from what it wrote into the lock file."""
    try:
        info = json.loads(os.pread(fd, 65536, 0))
        where = "" if info["host"] == socket.gethostname() else f" on {info['host']}"
        command = info["command"] if len(info["command"]) <= 160 else info["command"][:157] + "..."
        return f"pid {info['pid']}{where} (started {info['started']}: {command})"
    except (ValueError, KeyError, TypeError, OSError):  # written a moment ago, not yet filled in
        return "another process"


def _record(fd: int) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": shlex.join(getattr(sys, "orig_argv", sys.argv))}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)


@contextmanager
def lock_folder(folder: str | os.PathLike, hint: str) -> Iterator[Path]:
    """Hold ``folder``'s run lock (creating the folder) for the block, without waiting.

    Raises :class:`FolderInUse` naming the holder when another process has it; ``hint`` ends the message
    with the alternative to waiting, e.g. ``"choose another --out"``. Under torchrun only rank 0 takes it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield folder
        return
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUse(f"{folder} is in use by {_holder(fd)}; wait for it or {hint}") from None
        _record(fd)
        yield folder
    finally:
        os.close(fd)  # releases the lock; the file stays (deleting it would race with the next run's open)


def temp_path(target: str | os.PathLike, kind: str = "tmp") -> Path:
    """A name next to ``target`` for this process alone: ``.<kind>-<name>-<pid>-<random>``."""
    target = Path(target)
    return target.with_name(f".{kind}-{target.name}-{os.getpid()}-{secrets.token_hex(4)}")


def temp_dir(target: str | os.PathLike) -> Path:
    """Create an empty :func:`temp_path` folder (mode 0777 minus the umask, as any new folder)."""
    path = temp_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir()
    return path


def delete(path: Path) -> None:
    """Remove a file, a link (not what it points to) or a folder tree."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def sweep_temps(folder: str | os.PathLike, depth: int = 2) -> list[Path]:
    """Delete the ``.tmp-*``/``.old-*`` leftovers of killed saves in ``folder`` and ``depth - 1`` levels of
    subfolders (``checkpoints/``, ``seed-*/``); returns them. Only call it holding the folder's lock."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(TEMP_PREFIXES):
            delete(entry)
            removed.append(entry)
        elif depth > 1 and entry.is_dir() and not entry.is_symlink():
            removed += sweep_temps(entry, depth - 1)
    return removed


def refuse_overlap(source: str | os.PathLike, out: str | os.PathLike, source_name: str, out_name: str) -> None:
    """ValueError when a run's input folder and its output folder are one, or one lies inside the other
    (compared as real paths, links resolved): writing the output would overwrite or delete the input."""
    src, dst = Path(source).resolve(), Path(out).resolve()
    relation = "is" if src == dst else "is inside" if dst.is_relative_to(src) else \
        "contains" if src.is_relative_to(dst) else None
    if relation:
        raise ValueError(f"{out_name} {out} {relation} the {source_name} folder {source}: the run would overwrite "
                         f"its own input; choose another {out_name}")
