"""Apply a planned set of object puts and deletes to a store, all or nothing.

Neither backend offers multi-object transactions, so `apply_changes` builds one:

    1. check every key as the store will write it (`Store.check_writable`) and read the
       bytes of every object the change set overwrites or deletes: the undo log;
    2. put a journal object that names the keys the change set creates;
    3. apply the changes in the caller's order (the caller puts its commit record last,
       e.g. staging's manifest);
    4. delete the journal. Only now is the change set done.

If anything raises before step 4 has completed (a store error, a full disk, Ctrl-C), the
undo log is played back in reverse: created objects are deleted, overwritten and deleted
ones put back and the journal removed, so the store holds the old version byte for byte.
If the process dies instead (kill -9, power cut) there is no one to undo, and the journal
stays behind: `read_journal` hands its keys to the next run, which treats them as its own
leftovers (staging deletes those it does not produce itself) and checks every other object
against content hashes, so that run leaves the complete version it was asked for.

What holds on S3: each put and delete is atomic and read-after-write consistent, and the
same undo runs after an error, so a failed run that could reach S3 to undo leaves the old
version. There is no isolation: other readers see intermediate states while a change set
is applied (on the local store as well, one object at a time), and two runs against one
bucket at once are not serialised. Run one staging per bucket at a time.

Cost: the undo log holds, in memory, the old bytes of every object that is overwritten or
deleted (nothing for objects that are created or left alone).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sconeflow.errors import ObjectNotFoundError, StoreError
from sconeflow.progress import ProgressFn, no_progress
from sconeflow.store import Store

JOURNAL_NOTE = (
    "a change set is being applied here, or was interrupted; the next run of the same "
    "command finishes or cleans up after it"
)


@dataclass(frozen=True)
class Put:
    key: str
    data: bytes


@dataclass(frozen=True)
class Delete:
    key: str


Change = Put | Delete


def read_journal(store: Store, bucket: str, journal_key: str) -> set[str]:
    """Keys an interrupted change set may have created; empty without a (readable) journal."""
    try:
        doc = json.loads(store.get(bucket, journal_key))
    except (ObjectNotFoundError, ValueError):
        return set()
    created = doc.get("created") if isinstance(doc, dict) else None
    if not isinstance(created, list):
        return set()
    return {k for k in created if isinstance(k, str)}


def apply_changes(
    store: Store,
    bucket: str,
    changes: Sequence[Change],
    *,
    journal_key: str,
    existing: Collection[str],
    progress: ProgressFn = no_progress,
) -> None:
    """Apply `changes` in order, all or nothing (see the module docstring).

    `existing`: the keys that exist now (from a listing), so that only those are read for
    the undo log. Raises what the failing operation raised, after undoing; StoreError if
    the undo itself failed, saying that a second run repairs the store.
    """
    keys = [c.key for c in changes]
    store.check_writable(bucket, [journal_key, *(c.key for c in changes if isinstance(c, Put))])
    undo: dict[str, bytes | None] = {}  # key -> its bytes before, None: it did not exist
    for key in [journal_key, *keys]:
        if key in undo:
            continue
        try:
            undo[key] = store.get(bucket, key) if key in existing else None
        except ObjectNotFoundError:
            undo[key] = None
    created = {k for k in keys if undo[k] is None}
    if undo[journal_key] is not None:  # an earlier run was interrupted: keep its keys too
        created |= read_journal(store, bucket, journal_key)
    journal = {"version": 1, "note": JOURNAL_NOTE, "created": sorted(created)}
    touched: list[str] = []
    try:
        touched.append(journal_key)
        store.put(bucket, journal_key, json.dumps(journal, indent=1).encode())
        for n, change in enumerate(changes, start=1):
            touched.append(change.key)
            if isinstance(change, Put):
                store.put(bucket, change.key, change.data)
            else:
                store.delete(bucket, change.key)
            if n % 200 == 0 or n == len(changes):
                progress("upload", n, len(changes))
        store.delete(bucket, journal_key)
    except BaseException as err:
        problems = _undo(store, bucket, touched, undo)
        if problems and not isinstance(err, KeyboardInterrupt):
            raise StoreError(
                f"{err}; undoing the partial change failed too ({problems[0]}), so "
                f"{store.uri(bucket)} may hold a mix of old and new objects: run the same "
                "command again once the store works, and it repairs them"
            ) from err
        raise


def _undo(
    store: Store, bucket: str, touched: list[str], undo: dict[str, bytes | None]
) -> list[str]:
    """Put back what `touched` changed, newest first, the journal last; returns failures."""
    problems: list[str] = []
    journal_key = touched[0]
    done: set[str] = set()
    for key in [*reversed(touched[1:]), journal_key]:
        if key in done:
            continue
        done.add(key)
        before = undo[key]
        try:
            if before is None:
                store.delete(bucket, key)
            else:
                store.put(bucket, key, before)
        except Exception as err:
            problems.append(f"{key}: {err}")
            if key != journal_key:
                # Keep the journal, so that the next run knows what to clean up.
                done.add(journal_key)
    return problems
