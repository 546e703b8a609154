"""Downloads (only when the user allows them) and safe archive extraction.

Every download goes to a temporary file next to its destination, is checked against its
published MD5, and only then renamed into place, so an interrupted or corrupted download
never leaves a file that looks complete. Archives are extracted member by member after
checking that each one is a plain file or folder inside the expected top folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Optional, Sequence


TIMEOUT_S = 15.0  # per connect/read: fail fast where there is no network
_CHUNK = 1 << 20


class DownloadError(Exception):
    """A download or archive problem; loaders turn it into a DatasetError saying what to do."""


def data_home() -> Path:
    """Default folder for downloaded data: $SNNROBUST_DATA, else ~/.cache/snnrobust/data."""
    env = os.environ.get("SNNROBUST_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "snnrobust" / "data"


def md5_file(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(urls: Sequence[str], dest: Path, md5: Optional[str], timeout: float = TIMEOUT_S) -> Path:
    """Download the first of ``urls`` that works to ``dest`` (atomic, MD5-checked).

    Raises DownloadError with the reason of the last failure.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    last = "no URL given"
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                _copy_with_progress(resp, out, total, dest.name)
            if md5 is not None:
                got = md5_file(tmp)
                if got != md5:
                    raise DownloadError(f"{url} has MD5 {got}, expected {md5}")
            os.replace(tmp, dest)
            return dest
        except DownloadError as e:
            last = str(e)
        except Exception as e:  # URLError, timeouts, HTTP errors, disk full: try the next mirror
            last = f"{url}: {type(e).__name__}: {e}"
        finally:
            if tmp.exists():
                tmp.unlink()
    raise DownloadError(last.replace("\n", " "))


def _copy_with_progress(src, out, total: Optional[int], label: str) -> None:
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {label}", leave=False, disable=None) as bar:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            out.write(chunk)
            bar.update(len(chunk))


def _safe_member_path(member: tarfile.TarInfo, top: str) -> PurePosixPath:
    p = PurePosixPath(member.name)
    if p.is_absolute() or ".." in p.parts or not p.parts or p.parts[0] != top:
        raise DownloadError(f"archive member {member.name!r} is outside {top}/; refusing to extract")
    if not (member.isfile() or member.isdir()):
        raise DownloadError(f"archive member {member.name!r} is a link or special file; refusing to extract")
    return p


def extract_tar(archive: Path, dest_dir: Path, top: str) -> Path:
    """Extract the folder ``top`` of a .tar.gz into ``dest_dir``; returns dest_dir/top.

    Only regular files and folders under ``top/`` are accepted (no absolute paths, "..",
    links or devices). Extraction happens in a temporary folder renamed into place at the end.
    """
    final = dest_dir / top
    if final.exists():
        raise DownloadError(f"{final} already exists; remove it to extract {archive.name} again")
    dest_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{top}.", dir=dest_dir))
    try:
        with tarfile.open(archive, "r:*") as tf:
            for member in tf:
                rel = _safe_member_path(member, top)
                target = work.joinpath(*rel.parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(member)
                assert src is not None
                with src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
        if not (work / top).is_dir():
            raise DownloadError(f"{archive} has no {top}/ folder")
        os.replace(work / top, final)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DownloadError(f"{archive} is not a readable tar.gz ({e})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final
