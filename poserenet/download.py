"""`poserenet data download coco|mpii`: the official archives, resumable, checksummed, unpacked
into the layout the configs expect. For users with internet access; nothing else in poserenet
downloads anything.

Layout written under ROOT:
- coco: train2017/, val2017/, annotations/person_keypoints_{train,val}2017.json
- mpii: images/, annotations/mpii_{train,val}.json (the common MPII json lists),
  annotations/mpii_gt_val.mat, and their COCO-style conversions
  annotations/mpii_{train,val}_coco.json (with head boxes for PCKh) that the configs read.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from .errors import PoseDataError
from .files import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Archive:
    url: str
    md5: str | None  # None: the publisher gives none (the sha256 is printed instead)
    # After unpacking into a scratch folder: (glob pattern, destination folder under ROOT).
    place: tuple[tuple[str, str], ...]


DATASETS: dict[str, dict[str, Archive]] = {
    "coco": {
        "annotations": Archive("http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
                               "f4bbac642086de4f52a3fdda2de5fa2c", (("annotations", "."),)),
        "val": Archive("http://images.cocodataset.org/zips/val2017.zip", "442b8da7639aecaf257c1dceb8ba8c80", (("val2017", "."),)),
        "train": Archive("http://images.cocodataset.org/zips/train2017.zip", "cced6f7f71b7629ddf16f17bbcfab6b2", (("train2017", "."),)),
    },
    "mpii": {
        "annotations": Archive("https://download.openmmlab.com/mmpose/datasets/mpii_annotations.tar", None,
                               (("**/mpii_*.json", "annotations"), ("**/mpii_gt_val.mat", "annotations"))),
        "images": Archive("https://datasets.d2.mpi-inf.mpg.de/andriluka14cvpr/mpii_human_pose_v1.tar.gz",
                          "b6bc9c6869d3f035a5570b2e68ec84c4", (("images", "."),)),
    },
}  # fmt: skip

CHUNK = 1 << 20


def _hash(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download_file(url: str, dest: Path, md5: str | None = None, progress: bool = True, timeout: float = 60) -> Path:
    """Download `url` to `dest`, resuming a partial `dest.part` with an HTTP Range request; the
    size must be the server's length and the MD5 (when known) the publisher's before the file
    is renamed into place, with a `dest.complete` marker. A `dest` without a marker (an earlier
    run's, or a copy) is not trusted: it is fetched again, resuming onto it."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    marker = dest.with_name(dest.name + ".complete")
    part = dest.with_name(dest.name + ".part")
    if dest.is_file():
        if _verified(dest, marker, md5):
            return dest
        dest.replace(part)
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    total = None
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to fetch: the partial file may be complete
            response, total = None, _range_total(e.headers.get("Content-Range"))
        else:
            raise PoseDataError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise PoseDataError(f"{url}: cannot connect ({getattr(e, 'reason', e)}); run again to resume") from None
    if response is not None:
        with response:
            resumed = have and response.status == 206
            if not resumed:
                have = 0  # the server ignored the range: start over
            if resumed:
                total = _range_total(response.headers.get("Content-Range"))
            if total is None and response.length is not None:
                total = response.length + have
            with open(part, "ab" if resumed else "wb") as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
                try:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        f.write(block)
                        bar.update(len(block))
                except (OSError, urllib.error.URLError, http.client.HTTPException) as e:
                    raise PoseDataError(f"{url}: connection lost ({e!r}); run again to resume") from None
    size = part.stat().st_size
    if total is not None and size < total:
        raise PoseDataError(f"{url}: connection lost after {size} of {total} bytes; run again to resume")
    if total is not None and size > total:
        part.unlink()
        raise PoseDataError(f"{dest.name}: {size} bytes, but the server's file has {total}; the partial file was removed, run again")
    if md5 is not None:
        got = _hash(part, "md5")
        if got != md5:
            part.unlink()
            raise PoseDataError(f"{dest.name}: checksum mismatch (md5 {got}, expected {md5}); the partial file was removed, run again")
    elif total is None:
        log.warning("%s: the server gave no length and the publisher no checksum: its completeness is checked when unpacking", url)
    part.replace(dest)
    write_json_atomic(marker, {"url": url, "bytes": size, "md5": md5})
    return dest


def _range_total(content_range: str | None) -> int | None:
    """The full length from a Content-Range header ("bytes 0-99/1000" or "bytes */1000")."""
    if content_range and "/" in content_range:
        tail = content_range.rsplit("/", 1)[1].strip()
        return int(tail) if tail.isdigit() else None
    return None


def _verified(path: Path, marker: Path, md5: str | None) -> bool:
    """`path` is the archive this module finished downloading (its marker's size and checksum)."""
    try:
        info = json.loads(marker.read_text())
        return info["bytes"] == path.stat().st_size and (md5 is None or info.get("md5") == md5)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def unpack(archive: Path, root: Path, place: tuple[tuple[str, str], ...]) -> list[Path]:
    """Unpack into a scratch folder beside `root`, then move the matching entries into place."""
    root.mkdir(parents=True, exist_ok=True)
    moved = []
    with tempfile.TemporaryDirectory(dir=root, prefix=".unpack-") as tmp:
        tmp_path = Path(tmp)
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as z:
                    z.extractall(tmp_path)
            else:
                with tarfile.open(archive) as t:
                    try:
                        t.extractall(tmp_path, filter="data")  # no absolute paths or links out of the folder
                    except TypeError:  # Python without extraction filters
                        t.extractall(tmp_path)
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as e:
            raise PoseDataError(f"{archive}: cannot unpack ({e})") from None
        if not zipfile.is_zipfile(archive) and not _tar_ends(archive):
            raise PoseDataError(f"{archive}: the tar archive ends without its end-of-archive blocks (it is truncated)")
        for pattern, dest in place:
            matches = sorted(tmp_path.glob(pattern))
            if not matches:
                raise PoseDataError(f"{archive}: has no {pattern!r}; not the expected archive")
            for m in matches:
                target = root / dest / m.name
                target.parent.mkdir(parents=True, exist_ok=True)
                _merge_move(m, target)
                moved.append(target)
    return moved


def _tar_ends(path: Path) -> bool:
    """An uncompressed tar ends with two zero blocks; one cut at a member boundary unpacks
    without complaint but has none. (Compressed archives: the decompressor detects a cut.)"""
    with open(path, "rb") as f:
        magic = f.read(6)
        if magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic == b"\xfd7zXZ\x00":
            return True
        f.seek(0, 2)
        if f.tell() < 1024:
            return False
        f.seek(-1024, 2)
        return f.read() == bytes(1024)


def _merge_move(src: Path, dst: Path) -> None:
    """Move `src` to `dst`; folders merge into existing ones (files of the same name are
    replaced, others kept), so unpacking never deletes what a user already has there."""
    if not dst.exists():
        shutil.move(str(src), str(dst))
    elif src.is_dir() and dst.is_dir():
        for child in src.iterdir():
            _merge_move(child, dst / child.name)
    else:
        if dst.is_dir():
            raise PoseDataError(f"{dst}: is a folder, the archive has a file there")
        dst.unlink()
        shutil.move(str(src), str(dst))


def fetch(
    name: str,
    root: str | Path,
    parts: list[str] | None = None,
    mirror: str | None = None,
    progress: bool = True,
    keep_archives: bool = False,
    log: Callable[[str], None] = print,
    datasets: dict[str, dict[str, Archive]] | None = None,
) -> Path:
    """Download, verify and unpack dataset `name`'s archives (all, or `parts`) under `root`.

    `mirror` replaces each archive's address by MIRROR/<file name>. A part already unpacked
    (its stamp file exists) is skipped, so the command can be re-run after an interruption.
    """
    datasets = datasets or DATASETS
    if name not in datasets:
        raise PoseDataError(f"unknown dataset {name!r}; choose one of {', '.join(datasets)}")
    archives = datasets[name]
    unknown = set(parts or []) - set(archives)
    if unknown:
        raise PoseDataError(f"{name}: unknown part(s) {sorted(unknown)}; choose from {', '.join(archives)}")
    root = Path(root)
    downloads = root / "downloads"
    for part in parts or list(archives):
        a = archives[part]
        stamp = root / f".{name}-{part}.done"
        if stamp.is_file():
            log(f"{name} {part}: already in {root}")
            continue
        filename = a.url.rsplit("/", 1)[-1]
        url = f"{mirror.rstrip('/')}/{filename}" if mirror else a.url
        path = download_file(url, downloads / filename, a.md5, progress)
        if a.md5 is None:
            log(f"{filename}: the publisher gives no checksum; sha256 {_hash(path, 'sha256')}")
        marker = path.with_name(path.name + ".complete")
        try:
            moved = unpack(path, root, a.place)
        except PoseDataError as e:  # a broken archive is of no use: the next run fetches it anew
            path.unlink(missing_ok=True)
            marker.unlink(missing_ok=True)
            raise PoseDataError(f"{e}; the archive was removed, run again to fetch it anew") from None
        write_text_atomic(stamp, "\n".join(str(m.relative_to(root)) for m in moved) + "\n")
        if not keep_archives:
            path.unlink()
            marker.unlink(missing_ok=True)
        log(f"{name} {part}: {', '.join(str(m.relative_to(root)) for m in moved[:4])}{' ...' if len(moved) > 4 else ''}")
    if name == "mpii" and (root / "annotations" / "mpii_val.json").is_file():
        _convert_mpii(root, log)
    return root


def _convert_mpii(root: Path, log: Callable[[str], None]) -> None:
    """The COCO-style files the MPII configs read, with head boxes for PCKh on val."""
    from .convert import mpii_to_coco

    ann = root / "annotations"
    for split, gt in (("train", None), ("val", ann / "mpii_gt_val.mat")):
        src = ann / f"mpii_{split}.json"
        if src.is_file():
            out = ann / f"mpii_{split}_coco.json"
            write_json_atomic(out, mpii_to_coco(src, None, gt if gt is not None and gt.is_file() else None))
            log(f"mpii: wrote {out.relative_to(root)}")
