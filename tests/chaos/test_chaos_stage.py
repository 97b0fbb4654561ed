"""Chaos: interrupt `stage` at every write it makes, on the embedded store and on a real S3
API (moto's server), and check that the store holds the old version or the new one, byte for
byte, and that the next `stage` completes whatever was asked of it.

The staging under test changes everything a staging can: it creates images (bicycle),
overwrites images with new pixels (baby, from a tarball with other pixels), deletes stale
ones (apple), rewrites both `.lst` files and the manifest, and leaves objects it did not
stage alone. Faults come from a real store wrapped to fail on its k-th write (put or delete):
- once: that write raises, the store then works again (a transient error, Ctrl-C), so the
  undo runs and the store must be exactly the old version;
- dead: every operation from that write on raises, undo included, as if the process had
  died there; the store may then be mixed, and the next healthy run must repair it, to the
  new version or, if asked, back to the old one;
- kill: a real `kill -9` of a staging process at its k-th write.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from sconeflow.config import load_settings
from sconeflow.errors import StoreError
from sconeflow.staging import JOURNAL_KEY, stage_cifar
from sconeflow.store import LocalStore, Store, open_store
from sconeflow.synthetic import meta_dict, split_dict, write_tarball

OLD_CLASSES = ["apple", "baby"]
NEW_CLASSES = ["baby", "bicycle"]
# apple 0, baby 2, bicycle 8: each split holds some of each, under the same file names in
# both tarballs (names follow labels), with other pixels in the new one (other seeds).
TRAIN_LABELS = [0, 2, 8]
TEST_LABELS = [0, 2, 8]


class InjectedFault(StoreError):
    """The fault this suite injects."""


class FaultyStore:
    """A real store whose k-th write (put or delete, counted from 1) fails.

    mode "once": only that write raises; "dead": it and every later operation raise;
    "kill": the process is killed with SIGKILL at that write.
    """

    def __init__(self, inner: Store, fail_at: int, mode: str = "once") -> None:
        self.inner, self.fail_at, self.mode = inner, fail_at, mode
        self.writes = 0
        self.dead = False

    def _alive(self) -> None:
        if self.dead:
            raise InjectedFault("the store is gone (injected)")

    def _write(self) -> None:
        self._alive()
        self.writes += 1
        if self.writes == self.fail_at:
            if self.mode == "kill":
                os.kill(os.getpid(), 9)
            self.dead = self.mode == "dead"
            raise InjectedFault(f"injected fault at write {self.writes}")

    def put(self, bucket: str, key: str, data: bytes | bytearray) -> None:
        self._write()
        self.inner.put(bucket, key, data)

    def delete(self, bucket: str, key: str) -> None:
        self._write()
        self.inner.delete(bucket, key)

    def get(self, bucket: str, key: str) -> bytes:
        self._alive()
        return self.inner.get(bucket, key)

    def exists(self, bucket: str, key: str) -> bool:
        self._alive()
        return self.inner.exists(bucket, key)

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        self._alive()
        return self.inner.list(bucket, prefix)

    def list_etags(self, bucket: str, prefix: str = "") -> dict[str, str]:
        self._alive()
        return self.inner.list_etags(bucket, prefix)

    def check_writable(self, bucket: str, keys: Iterable[str]) -> None:
        self._alive()
        self.inner.check_writable(bucket, keys)

    def uri(self, bucket: str, key: str = "") -> str:
        return self.inner.uri(bucket, key)


def _tarball(path: Path, seed: int) -> Path:
    return write_tarball(
        path,
        {
            "cifar-100-python/meta": meta_dict(),
            "cifar-100-python/train": split_dict(len(TRAIN_LABELS), TRAIN_LABELS, seed=seed),
            "cifar-100-python/test": split_dict(len(TEST_LABELS), TEST_LABELS, seed=seed + 1),
        },
    )


@pytest.fixture(scope="module")
def tarballs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("chaos-tarballs")
    return _tarball(folder / "old.tar.gz", 1), _tarball(folder / "new.tar.gz", 11)


def snapshot(store: Store, bucket: str) -> dict[str, bytes]:
    """Every object in the bucket with its bytes; for the local store, also no temp files."""
    if isinstance(store, LocalStore):
        tmp = store.root / ".tmp"
        assert not tmp.exists() or list(tmp.iterdir()) == []
    return {key: store.get(bucket, key) for key in store.list(bucket)}


def _prepare_old(store: Store, bucket: str, old: Path) -> dict[str, bytes]:
    store.put(bucket, "data/unrelated.txt", b"not staged: never touched")
    store.put(bucket, "models/job/output/model.tar.gz", b"a model")
    stage_cifar(store, bucket, old, OLD_CLASSES)
    return snapshot(store, bucket)


StoreFactory = Callable[[], tuple[Store, str]]


@pytest.fixture(params=["local", "s3"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A factory of fresh, empty (store, bucket) pairs on one backend."""
    counter = iter(range(10_000))
    if request.param == "local":
        return lambda: (LocalStore(tmp_path / f"store{next(counter)}"), "sconeflow")
    env = request.getfixturevalue("s3_env")
    store = open_store(load_settings(env=env, home=tmp_path, store_uri="s3://"))
    prefix = f"chaos-{os.getpid()}-{id(request)}"
    return lambda: (store, f"{prefix}-{next(counter)}")


def _expected(
    make_store: StoreFactory, tarballs: tuple[Path, Path]
) -> tuple[dict[str, bytes], dict[str, bytes], int]:
    """The old and new versions from a run without faults, and how many writes it took."""
    old, new = tarballs
    store, bucket = make_store()
    before = _prepare_old(store, bucket, old)
    counting = FaultyStore(store, fail_at=0)
    stage_cifar(counting, bucket, new, NEW_CLASSES)
    after = snapshot(store, bucket)
    assert after != before and after["data/unrelated.txt"] == before["data/unrelated.txt"]
    assert not any(k.startswith("data/train/apple") for k in after)
    return before, after, counting.writes


def test_a_failure_at_any_write_leaves_the_old_version_and_the_next_stage_completes(
    make_store: StoreFactory, tarballs: tuple[Path, Path]
) -> None:
    old, new = tarballs
    before, after, writes = _expected(make_store, tarballs)
    assert writes == 11  # journal, 2 creates, 2 overwrites, 2 .lst, 2 deletes, manifest, journal
    for k in range(1, writes + 1):
        store, bucket = make_store()
        assert _prepare_old(store, bucket, old) == before
        with pytest.raises(InjectedFault, match=f"write {k}"):
            stage_cifar(FaultyStore(store, k), bucket, new, NEW_CLASSES)
        assert snapshot(store, bucket) == before, f"fault at write {k} left a mixed store"
        result = stage_cifar(store, bucket, new, NEW_CLASSES)
        assert snapshot(store, bucket) == after, f"after a fault at write {k}"
        assert not result.load.current


def test_ctrl_c_at_a_write_undoes_it_too(
    make_store: StoreFactory, tarballs: tuple[Path, Path]
) -> None:
    old, new = tarballs
    before, _, writes = _expected(make_store, tarballs)

    class Interrupting(FaultyStore):
        def _write(self) -> None:
            self.writes += 1
            if self.writes == self.fail_at:
                raise KeyboardInterrupt

    for k in (2, writes // 2, writes):
        store, bucket = make_store()
        _prepare_old(store, bucket, old)
        with pytest.raises(KeyboardInterrupt):
            stage_cifar(Interrupting(store, k), bucket, new, NEW_CLASSES)
        assert snapshot(store, bucket) == before


def test_after_dying_at_any_write_the_next_stage_repairs_to_either_version(
    make_store: StoreFactory, tarballs: tuple[Path, Path]
) -> None:
    old, new = tarballs
    before, after, writes = _expected(make_store, tarballs)
    both = [(new, NEW_CLASSES, after), (old, OLD_CLASSES, before)]
    local = isinstance(make_store()[0], LocalStore)
    for k in range(1, writes + 1):
        # Every k repairs to both versions on the local store; on S3 (a few ms a request)
        # the k alternate between them.
        for target, classes, expected in both if local else [both[k % 2]]:
            store, bucket = make_store()
            _prepare_old(store, bucket, old)
            with pytest.raises(StoreError):
                stage_cifar(FaultyStore(store, k, "dead"), bucket, new, NEW_CLASSES)
            mixed = snapshot(store, bucket)
            # The journal is there from the first write on, until the last one removes it.
            assert (JOURNAL_KEY in mixed) == (1 < k <= writes), k
            stage_cifar(store, bucket, target, classes)
            assert snapshot(store, bucket) == expected, f"died at write {k}, restaged {target}"


KILL_SCRIPT = """
import sys
from pathlib import Path
from sconeflow.staging import stage_cifar
from sconeflow.store import LocalStore
sys.path.insert(0, sys.argv[4])
from test_chaos_stage import FaultyStore, NEW_CLASSES
store = FaultyStore(LocalStore(Path(sys.argv[1])), int(sys.argv[3]), "kill")
stage_cifar(store, "sconeflow", Path(sys.argv[2]), NEW_CLASSES)
"""


@pytest.mark.slow
def test_kill_9_during_stage_then_the_next_stage_completes(
    tmp_path: Path, tarballs: tuple[Path, Path]
) -> None:
    old, new = tarballs
    reference = LocalStore(tmp_path / "reference")
    before = _prepare_old(reference, "sconeflow", old)
    stage_cifar(reference, "sconeflow", new, NEW_CLASSES)
    after = snapshot(reference, "sconeflow")
    for n, k in enumerate((2, 5, 8, 11)):
        root = tmp_path / f"killed{k}"
        store = LocalStore(root)
        _prepare_old(store, "sconeflow", old)
        here = str(Path(__file__).parent)
        proc = subprocess.run(
            [sys.executable, "-c", KILL_SCRIPT, str(root), str(new), str(k), here],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == -9, proc.stderr
        assert store.exists("sconeflow", JOURNAL_KEY)
        # Restage what was asked, or go back to the old version: both come out exact.
        back = n % 2 == 0
        target, classes, expected = (
            (old, OLD_CLASSES, before) if back else (new, NEW_CLASSES, after)
        )
        stage_cifar(store, "sconeflow", target, classes)
        assert snapshot(store, "sconeflow") == expected, k
