"""The workspace's store as the ASL engine's object store (`sconeflow.workflow.items`),
for Distributed Maps: their ItemReader lists and reads objects, their ResultWriter writes.

The engine needs a listing with each object's size, ETag and modification time (AWS's
listObjectsV2 items carry them). S3 reports those itself; the embedded store keeps plain
files, so the ETag is computed as S3 computes it for a single-part upload: the MD5 of the
content, in double quotes. Keys and buckets are validated by the store as for any caller.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os

from sconeflow.store import LocalStore, S3Store, Store, validate_key
from sconeflow.workflow.items import ObjectInfo


class StoreObjects:
    """`ObjectStore` over a `sconeflow.store.Store` (embedded or S3)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, bucket: str, key: str) -> bytes:
        return self.store.get(bucket, key)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.store.put(bucket, key, data)

    def list(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        if isinstance(self.store, S3Store):
            return _list_s3(self.store, bucket, prefix)
        keys = self.store.list(bucket, prefix)
        if isinstance(self.store, LocalStore):
            return [_local_info(self.store, bucket, key) for key in keys]
        now = dt.datetime.now(dt.UTC)  # another backend: read each object for its size
        infos = []
        for key in keys:
            data = self.store.get(bucket, key)
            infos.append(ObjectInfo(key, len(data), _etag(data), now))
        return infos


def _local_info(store: LocalStore, bucket: str, key: str) -> ObjectInfo:
    path = store.root / bucket / validate_key(key)
    data = path.read_bytes()
    stamp = dt.datetime.fromtimestamp(os.stat(path).st_mtime, dt.UTC)
    return ObjectInfo(key, len(data), _etag(data), stamp)


def _list_s3(store: S3Store, bucket: str, prefix: str) -> list[ObjectInfo]:
    infos = []
    pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            infos.append(
                ObjectInfo(
                    key=obj["Key"],
                    size=int(obj["Size"]),
                    etag=obj["ETag"],
                    last_modified=obj["LastModified"],
                    storage_class=obj.get("StorageClass", "STANDARD"),
                )
            )
    return sorted(infos, key=lambda info: info.key)


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'
