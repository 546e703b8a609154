"""Files: atomic writes, content hashes and output-folder checks, one implementation each.

Atomic writes
    Every file snnrobust produces (checkpoints, results JSON, CSV exports, reports, study.json)
    is written through :func:`atomic_open`: the data goes to a temporary file in the target's
    folder, is flushed and fsync'ed, and is then renamed over the target with ``os.replace``
    (atomic on POSIX and Windows within one file system). A reader therefore sees either the
    old file or the complete new one, and a write that fails half-way (an exception, a full
    disk, Ctrl-C) removes its temporary file and leaves an existing target byte for byte as
    it was.

File mode
    New files get the mode an ordinary ``open(path, "w")`` would give them: ``0o666`` minus
    the process umask (``0o644`` with the usual umask 022). The temporary file is created
    with ``os.open(..., 0o666)`` so the kernel applies the umask; ``tempfile.mkstemp`` is
    deliberately not used, because its ``0o600`` would make results unreadable to the
    other users of a shared machine while files written any other way are readable. The
    mode of a file being replaced is not carried over: every writer gives the same mode.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from .errors import ConfigError

#: Permission bits requested for every new file; the umask is subtracted by the kernel.
FILE_MODE = 0o666

_CHUNK = 1 << 20  # 1 MiB: hashes multi-GB checkpoints in constant memory


def _temp_name(path: Path) -> Path:
    # Hidden, in the same folder (os.replace cannot cross file systems), unique per process
    # and call, so concurrent writers of the same target never share a temporary file.
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_open(path: "str | os.PathLike", mode: str = "w", *, encoding: str = "utf-8",
                newline: "str | None" = None) -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` when the ``with`` block ends normally.

    ``mode`` is ``"w"`` (text, ``encoding``/``newline`` as in :func:`open`) or ``"wb"``.
    If the block raises, the temporary file is deleted and ``path`` is left untouched.
    The parent folder must exist (callers decide whether to create it). OSErrors are
    raised as they are, for the caller to turn into a one-line message naming its option.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    target = Path(path)
    tmp = _temp_name(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, FILE_MODE)
    try:
        if mode == "wb":
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding=encoding, newline=newline)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(p: Path) -> None:
    try:
        os.unlink(p)
    except OSError:  # already gone, or the folder vanished: nothing left to clean up
        pass


def atomic_write_bytes(path: "str | os.PathLike", data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`); returns the path."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: "str | os.PathLike", text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`); returns the path."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def file_sha256(path: "str | os.PathLike") -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks.

    Raises :class:`ConfigError` (one line) when the file is missing or unreadable.
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
    except FileNotFoundError:
        raise ConfigError(f"cannot hash {os.fspath(path)!s}: no such file; check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"cannot hash {os.fspath(path)!s}: it is a folder, not a file") from None
    except OSError as e:
        raise ConfigError(f"cannot hash {os.fspath(path)!s}: {e.strerror or e}") from None
    return h.hexdigest()


def check_output_folder(path: "str | os.PathLike", option: str = "--out") -> Path:
    """Check, before any work is done, that ``path`` can be used as an output folder.

    It may exist as a folder or not exist yet; then its nearest existing ancestor must be a
    writable folder. Nothing is created. Raises :class:`ConfigError` (one line, naming
    ``option``) when ``path`` or an ancestor is a file, or the place is not writable.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{option} {p} is an existing file, not a folder; give a folder path "
                          f"(e.g. {p.with_name(p.name + '-run')}) or move the file away")
    probe = p
    while not probe.exists():
        if probe.parent == probe:  # reached the root of a path that does not exist at all
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{option} {p}: {probe} is a file, so no folder can be made there; "
                          f"choose another {option}")
    if probe.is_dir() and not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {p}: {probe} is not writable; choose another {option}")
    return p
