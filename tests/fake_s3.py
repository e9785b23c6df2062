"""An in-memory stand-in for the boto3 S3 client calls imfuse makes: paginated listings
(with or without a delimiter), conditional puts, uploads and deletes. Thread-safe, so
racing exporters can share one."""

from __future__ import annotations

import threading
from pathlib import Path


class FakeS3:
    def __init__(self, keys=(), page_size=2, conditional=True):
        self.objects = {k: b"" for k in keys}
        self.uploads: list[str] = []
        self.page_size = page_size
        self.conditional = conditional  # False: a store that ignores If-None-Match
        self.lock = threading.Lock()

    @staticmethod
    def _error(code, status):
        exc = Exception(code)
        exc.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return exc

    def list_objects_v2(self, Bucket, Prefix, Delimiter=None, ContinuationToken=None, MaxKeys=1000):
        with self.lock:
            keys = sorted(k for k in self.objects if k.startswith(Prefix))
        if Delimiter is None:
            keys = keys[:MaxKeys]
            return {"Contents": [{"Key": k} for k in keys]} if keys else {}
        prefixes = sorted({Prefix + k[len(Prefix):].split(Delimiter)[0] + Delimiter
                           for k in keys if Delimiter in k[len(Prefix):]})
        start = int(ContinuationToken or 0)
        page = prefixes[start:start + self.page_size]
        more = start + self.page_size < len(prefixes)
        return {"CommonPrefixes": [{"Prefix": p} for p in page], "IsTruncated": more,
                **({"NextContinuationToken": str(start + self.page_size)} if more else {})}

    def put_object(self, Bucket, Key, Body, IfNoneMatch=None):
        with self.lock:
            if IfNoneMatch == "*" and self.conditional and Key in self.objects:
                raise self._error("PreconditionFailed", 412)
            self.objects[Key] = Body

    def upload_file(self, filename, bucket, key):
        with self.lock:
            self.uploads.append(key)
            self.objects[key] = Path(filename).read_bytes()

    def delete_object(self, Bucket, Key):
        with self.lock:
            self.objects.pop(Key, None)

    def delete_objects(self, Bucket, Delete):
        with self.lock:
            for item in Delete["Objects"]:
                self.objects.pop(item["Key"], None)
