"""CIFAR-100 staging: extract the tarball, transform chosen classes into PNGs and SageMaker
`.lst` manifests, load them into the object store.

    extract:   download_cifar (official URL, resumable, md5-verified) or a local tarball
    transform: read_cifar (three members only, restricted unpickler) -> select_rows -> encode
    load:      load_staged (skips objects whose sha256 is already there; manifest written last)

Everything is read, checked and encoded in memory before the first object is written, so bad
input never leaves partial data in the store. Measured on the 2-core dev machine: see
benchmarks/stage_bench.py (60,000 rows in 15.5 s at 966 MiB peak, linear in rows).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sconeflow.cifar import DEFAULT_CLASSES, OFFICIAL_MD5, OFFICIAL_MEMBER_MD5, OFFICIAL_URL
from sconeflow.errors import ChecksumError, DataError, UnsafeArchiveError
from sconeflow.progress import ProgressFn, no_progress
from sconeflow.store import Store, validate_key

MEMBER_PREFIX = "cifar-100-python/"
SPLITS = ("train", "test")
DATA_PREFIX = "data/"
MANIFEST_KEY = "data/manifest.json"
MAX_MEMBER_BYTES = 512 * 1024 * 1024  # the official train member is 155 MB
IMAGE_SHAPE = (32, 32, 3)


@dataclass(frozen=True)
class CifarSplit:
    """One split: images (N, 32, 32, 3) uint8 HWC RGB, fine labels (N,), file names."""

    images: np.ndarray
    fine_labels: np.ndarray
    filenames: list[str]


@dataclass(frozen=True)
class CifarData:
    fine_label_names: list[str]
    splits: dict[str, CifarSplit]
    member_md5: dict[str, str]


@dataclass(frozen=True)
class StagedFile:
    key: str  # store key, e.g. data/train/bicycle_s_000513.png
    split: str
    index: int  # the CIFAR row
    label: int  # position of the class in --classes
    class_name: str
    data: bytes = field(repr=False)
    sha256: str = ""


@dataclass(frozen=True)
class StagedData:
    classes: list[str]
    files: list[StagedFile]
    lst: dict[str, bytes]  # split -> .lst file contents
    source: dict[str, Any]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class, e.g. {"train": {"bicycle": 400, ...}}."""
        out: dict[str, dict[str, int]] = {s: dict.fromkeys(self.classes, 0) for s in SPLITS}
        for f in self.files:
            out[f.split][f.class_name] += 1
        return out


@dataclass(frozen=True)
class LoadReport:
    uploaded: int
    skipped: int
    removed: int
    location: str


# ---------------------------------------------------------------- extract


def download_cifar(
    dest: Path,
    *,
    url: str = OFFICIAL_URL,
    md5: str = OFFICIAL_MD5,
    progress: ProgressFn = no_progress,
    timeout: float = 60.0,
) -> Path:
    """Download `url` to `dest`, resuming a partial `dest.part`, and verify its md5.

    An already complete `dest` with the right md5 is reused. A file whose md5 does not
    match is deleted and ChecksumError raised: we never fall back to other data.
    """
    if dest.exists():
        if _md5_file(dest) == md5:
            return dest
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            if have and resp.status != 206:  # the server ignored Range: start over
                have = 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length else None
            with part.open("ab" if have else "wb") as out:
                done = have
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    done += len(chunk)
                    progress("download (bytes)", done, total)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # asked past the end: the .part is already complete
            pass
        else:
            raise DataError(
                f"cannot download {url}: HTTP {err.code} {err.reason}. Offline? Pass "
                "--source PATH with a local copy of cifar-100-python.tar.gz"
            ) from err
    except (urllib.error.URLError, OSError) as err:
        kept = part.exists() and part.stat().st_size > 0
        raise DataError(
            f"cannot download {url}: {getattr(err, 'reason', err)}. Offline? Pass "
            "--source PATH with a local copy of cifar-100-python.tar.gz"
            + (f" (the partial download at {part} resumes next time)" if kept else "")
        ) from err
    got = _md5_file(part)
    if got != md5:
        part.unlink()
        raise ChecksumError(
            f"downloaded {url} has md5 {got}, expected {md5}; the file was deleted. "
            "Run again to download it afresh, or pass --source with a verified copy"
        )
    part.replace(dest)
    return dest


def _md5_file(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class _CifarUnpickler(pickle.Unpickler):
    """Admits only what CIFAR pickles contain: numpy array reconstruction and the codec
    Python 2 pickles use for byte strings. Anything else (os.system, eval, ...) is refused
    before it can run."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise UnsafeArchiveError(
                f"pickle wants {module}.{name}, which a CIFAR-100 file never contains; "
                "refusing to load it (the file may be hostile). Use the official tarball"
            )
        return super().find_class(module, name)


def _unpickle(data: bytes, member: str) -> Any:
    try:
        return _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafeArchiveError:
        raise
    except Exception as err:
        raise DataError(f"member {member!r} is not a readable CIFAR pickle: {err}") from err


def _safe_member_name(name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(
            f"tar member {name!r} escapes the archive's folder (absolute path or '..'); "
            "refusing the archive. Use the official cifar-100-python.tar.gz"
        )


def _read_members(tar_path: Path, progress: ProgressFn) -> dict[str, bytes]:
    """Read the three expected members in one streaming pass; extract nothing else.

    Every member name is checked, so an archive carrying a path that would escape its
    folder is refused as a whole, even though we never write members to disk.
    """
    wanted = {MEMBER_PREFIX + m: m for m in OFFICIAL_MEMBER_MD5}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(tar_path, mode="r|gz") as tar:
            for member in tar:
                _safe_member_name(member.name)
                if member.name not in wanted:
                    continue
                if not member.isfile():
                    raise UnsafeArchiveError(
                        f"tar member {member.name!r} is a link or special file, expected a "
                        "regular file"
                    )
                if member.size > MAX_MEMBER_BYTES:
                    raise DataError(
                        f"tar member {member.name!r} is {member.size} bytes, more than a "
                        f"CIFAR-100 member can be ({MAX_MEMBER_BYTES})"
                    )
                f = tar.extractfile(member)
                assert f is not None  # isfile() checked above
                found[wanted[member.name]] = f.read()
                progress("read members", len(found), len(wanted))
    except FileNotFoundError as err:
        raise DataError(f"no such file: {tar_path}; expected a cifar-100-python.tar.gz") from err
    except (tarfile.ReadError, EOFError, zlib.error, OSError) as err:
        kind = _not_gzip_kind(tar_path)
        if kind is not None:  # not a damaged tarball but another kind of file
            raise DataError(
                f"{tar_path} is {kind}, not a gzip tar archive; expected the CIFAR-100 "
                "python tarball cifar-100-python.tar.gz (pass it with --source, or leave "
                "--source out to download it)"
            ) from err
        raise DataError(
            f"{tar_path} is not a complete gzip tar archive ({err}); expected "
            "cifar-100-python.tar.gz. Truncated download? Delete it and download again"
        ) from err
    missing = sorted(set(OFFICIAL_MEMBER_MD5) - set(found))
    if missing:
        raise DataError(
            f"{tar_path} lacks member(s) {', '.join(MEMBER_PREFIX + m for m in missing)}; "
            "expected cifar-100-python/{meta,train,test} as in the official tarball"
        )
    return found


# File signatures ("magic numbers") of what people pass by mistake, checked in order.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a zip archive"),
    (b"BZh", "a bzip2 file"),
    (b"\xfd7zXZ\x00", "an xz file"),
    (b"\x80", "a Python pickle (an extracted CIFAR member? pass the .tar.gz itself)"),
)


def _not_gzip_kind(path: Path) -> str | None:
    """What `path` is when it is not gzip at all (None if it is gzip or unreadable), so a
    PNG or a text file is named as such instead of being called a truncated download."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if head.startswith(b"\x1f\x8b"):
        return None  # gzip: damaged or truncated, which the caller's message says
    if not head:
        return "an empty file (0 bytes)"
    for magic, kind in _SIGNATURES:
        if head.startswith(magic):
            return kind
    if len(head) > 262 and head[257:262] == b"ustar":
        return "an uncompressed tar archive"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return f"a file of another kind (it starts with {head[:8]!r})"
    return "a text file"


def read_cifar(tar_path: Path, *, progress: ProgressFn = no_progress) -> CifarData:
    """Read and check meta, train and test from a CIFAR-100 python tarball."""
    raw = _read_members(Path(tar_path), progress)
    member_md5 = {name: hashlib.md5(data).hexdigest() for name, data in raw.items()}
    meta = _unpickle(raw["meta"], "meta")
    names = _field(meta, b"fine_label_names", "meta")
    if not isinstance(names, list) or len(names) != 100:
        raise DataError("member 'meta': fine_label_names must be a list of 100 names")
    label_names = [n.decode("ascii") if isinstance(n, bytes) else str(n) for n in names]
    splits = {s: _parse_split(_unpickle(raw[s], s), s) for s in SPLITS}
    return CifarData(label_names, splits, member_md5)


def _field(obj: Any, key: bytes, member: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(
            f"member {member!r} has no {key.decode()!r}; expected a dict with keys "
            "b'data', b'fine_labels', b'filenames' (train/test) or b'fine_label_names' (meta)"
        )
    return obj[key]


def _parse_split(obj: Any, member: str) -> CifarSplit:
    data = _field(obj, b"data", member)
    labels = _field(obj, b"fine_labels", member)
    filenames = _field(obj, b"filenames", member)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or (data.shape[1] != 3072)
    ):
        shape = getattr(data, "shape", type(data).__name__)
        dtype = getattr(data, "dtype", "?")
        raise DataError(
            f"member {member!r}: data has shape {shape} and dtype {dtype}; expected uint8 "
            "(N, 3072) rows of 32x32 R, G and B planes"
        )
    n = data.shape[0]
    if not isinstance(labels, list) or len(labels) != n:
        raise DataError(f"member {member!r}: fine_labels must be a list of {n} integers")
    label_arr = np.asarray(labels)
    if label_arr.dtype.kind not in "iu" or (n and (label_arr.min() < 0 or label_arr.max() > 99)):
        raise DataError(f"member {member!r}: fine_labels must be integers from 0 to 99")
    if not isinstance(filenames, list) or len(filenames) != n:
        raise DataError(f"member {member!r}: filenames must be a list of {n} names")
    names = [f.decode("utf-8") if isinstance(f, bytes) else str(f) for f in filenames]
    for name in names:
        if "/" in name or not name.endswith(".png"):
            raise DataError(f"member {member!r}: file name {name!r} is not a plain '*.png' name")
        validate_key(name)
    if len(set(names)) != n:
        raise DataError(f"member {member!r}: file names are not unique")
    # (N, 3072) planar RGB -> (N, 32, 32, 3) HWC: a view, no copy until selection.
    images = data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
    return CifarSplit(images, label_arr.astype(np.int64), names)


# ---------------------------------------------------------------- transform


def resolve_classes(requested: Sequence[str], label_names: Sequence[str]) -> list[str]:
    """Check class names against CIFAR-100's fine labels; 'all' selects all 100."""
    if list(requested) == ["all"]:
        return list(label_names)
    unknown = [c for c in requested if c not in label_names]
    if unknown:
        raise DataError(
            f"unknown class name(s) {', '.join(map(repr, unknown))}; expected CIFAR-100 fine "
            f"label names such as {', '.join(label_names[:5])} ... (or 'all')"
        )
    if len(set(requested)) != len(requested) or not requested:
        raise DataError(f"classes {list(requested)!r} must be non-empty and distinct")
    return list(requested)


def transform(
    cifar: CifarData,
    classes: Sequence[str] = DEFAULT_CLASSES,
    *,
    progress: ProgressFn = no_progress,
) -> StagedData:
    """Encode the rows of the chosen classes as PNGs and build `train.lst` / `test.lst`.

    Label = position of the class in `classes`; `.lst` index = the CIFAR row.
    """
    chosen = resolve_classes(classes, cifar.fine_label_names)
    fine_to_label = {cifar.fine_label_names.index(c): i for i, c in enumerate(chosen)}
    lookup = np.full(100, -1, dtype=np.int64)
    for fine, label in fine_to_label.items():
        lookup[fine] = label
    rows_by_split = {
        s: np.flatnonzero(lookup[sp.fine_labels] >= 0) for s, sp in cifar.splits.items()
    }
    total = sum(len(r) for r in rows_by_split.values())
    files: list[StagedFile] = []
    lst: dict[str, bytes] = {}
    done = 0
    for split in SPLITS:
        sp = cifar.splits[split]
        lines = []
        for row in rows_by_split[split]:
            label = int(lookup[sp.fine_labels[row]])
            name = sp.filenames[row]
            png = encode_png(sp.images[row])
            files.append(
                StagedFile(
                    key=f"{DATA_PREFIX}{split}/{name}",
                    split=split,
                    index=int(row),
                    label=label,
                    class_name=chosen[label],
                    data=png,
                    sha256=hashlib.sha256(png).hexdigest(),
                )
            )
            lines.append(f"{row}\t{label}\t{name}\n")
            done += 1
            if done % 500 == 0 or done == total:
                progress("encode PNGs", done, total)
        lst[split] = "".join(lines).encode()
    return StagedData(chosen, files, lst, {"member_md5": cifar.member_md5})


def encode_png(image: np.ndarray) -> bytes:
    """(32, 32, 3) uint8 RGB -> PNG bytes, lossless (decoded pixels equal the input)."""
    buf = io.BytesIO()
    # compress_level 1: 3x faster than the default 6 and under 5% larger on 32x32 images.
    Image.fromarray(np.ascontiguousarray(image), mode="RGB").save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def parse_lst(text: str, *, source: str = ".lst") -> list[tuple[int, int, str]]:
    """Parse a SageMaker `.lst` manifest into (index, label, relative path) rows."""
    rows = []
    seen: set[int] = set()
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise DataError(f"{source} line {n}: expected 'index<TAB>label<TAB>path', got {line!r}")
        try:
            index, label = int(parts[0]), int(float(parts[1]))
        except ValueError as err:
            raise DataError(f"{source} line {n}: index and label must be numbers") from err
        if index in seen:
            raise DataError(f"{source} line {n}: index {index} appears twice")
        seen.add(index)
        rows.append((index, label, validate_key(parts[2])))
    return rows


# ---------------------------------------------------------------- load


def build_manifest(staged: StagedData) -> bytes:
    """The machine-readable manifest: one entry per image with its sha256."""
    doc = {
        "version": 1,
        "classes": staged.classes,
        "source": staged.source,
        "counts": staged.counts(),
        "files": [
            {
                "file": f.key[len(DATA_PREFIX) :],
                "key": f.key,
                "split": f.split,
                "index": f.index,
                "label": f.label,
                "class": f.class_name,
                "sha256": f.sha256,
            }
            for f in staged.files
        ],
    }
    return json.dumps(doc, indent=1).encode()


def load_staged(
    store: Store, bucket: str, staged: StagedData, *, progress: ProgressFn = no_progress
) -> LoadReport:
    """Put images, `.lst` files and the manifest into the store, skipping what is current.

    An image is skipped when the previous manifest lists it with the same sha256 and the
    object exists. Images the previous manifest listed that this staging does not produce
    are removed (and only those: we never delete objects we did not stage). The manifest
    is written last, so it only ever describes a complete staging.
    """
    previous = _previous_manifest(store, bucket)
    existing = set(store.list(bucket, DATA_PREFIX))
    uploads: list[tuple[str, bytes]] = [
        (f.key, f.data)
        for f in staged.files
        if not (previous.get(f.key) == f.sha256 and f.key in existing)
    ]
    for split, content in staged.lst.items():
        key = f"{DATA_PREFIX}{split}.lst"
        if key not in existing or store.get(bucket, key) != content:
            uploads.append((key, content))
    manifest = build_manifest(staged)
    if MANIFEST_KEY not in existing or store.get(bucket, MANIFEST_KEY) != manifest:
        uploads.append((MANIFEST_KEY, manifest))
    for n, (key, data) in enumerate(uploads, start=1):
        store.put(bucket, key, data)
        if n % 200 == 0 or n == len(uploads):
            progress("upload", n, len(uploads))
    current = {f.key for f in staged.files}
    stale = [k for k in previous if k not in current and k in existing]
    for key in stale:
        store.delete(bucket, key)
    images_uploaded = sum(1 for k, _ in uploads if k.endswith(".png"))
    return LoadReport(
        uploaded=images_uploaded,
        skipped=len(staged.files) - images_uploaded,
        removed=len(stale),
        location=store.uri(bucket, DATA_PREFIX),
    )


def _previous_manifest(store: Store, bucket: str) -> dict[str, str]:
    if not store.exists(bucket, MANIFEST_KEY):
        return {}
    try:
        doc = json.loads(store.get(bucket, MANIFEST_KEY))
        return {f["key"]: f["sha256"] for f in doc["files"]}
    except (ValueError, KeyError, TypeError):
        return {}  # unreadable: treat as absent, so everything is uploaded again


@dataclass(frozen=True)
class StageResult:
    source: str
    official: bool
    classes: list[str]
    counts: dict[str, dict[str, int]]
    load: LoadReport


def stage_cifar(
    store: Store,
    bucket: str,
    tarball: Path,
    classes: Sequence[str] = DEFAULT_CLASSES,
    *,
    progress: ProgressFn = no_progress,
) -> StageResult:
    """Extract, transform and load: the whole staging step for one tarball."""
    cifar = read_cifar(tarball, progress=progress)
    staged = transform(cifar, classes, progress=progress)
    official = cifar.member_md5 == OFFICIAL_MEMBER_MD5
    report = load_staged(store, bucket, staged, progress=progress)
    return StageResult(str(tarball), official, staged.classes, staged.counts(), report)
