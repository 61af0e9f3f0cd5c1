"""The S3-compatible backend of :class:`shared.storage.BlobStore`, through aiobotocore."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from shared.storage.base import (
    CHUNK_SIZE,
    S3_PART_SIZE,
    BlobInfo,
    BlobNotFound,
    Counted,
    _iter_chunks,
    _not_counted,
    _validate_expiry,
    _validate_prefix,
    _validate_range,
    validate_key,
)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_missing(exc: ClientError) -> bool:
    # HEAD answers have no body, so botocore reports the bare status "404" as the code.
    return _error_code(exc) in {"404", "NoSuchKey", "NotFound"}


class S3BlobStore:
    """Blobs as objects of one bucket of an S3-compatible service, through aiobotocore.

    Construct it, then ``await start()`` (or use :meth:`connect`); ``await close()`` when done.
    S3 makes single and multipart puts atomic by itself, so no temp object is needed.
    """

    def __init__(
        self,
        endpoint_url: str | None,
        bucket: str,
        region: str,
        access_key: str | None,
        secret_key: str | None,
    ) -> None:
        """Remember the settings; no connection is made until :meth:`start`.

        ``endpoint_url=None`` means AWS itself; ``access_key=None`` uses botocore's default
        credential chain.
        """
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self.region = region
        self._access_key = access_key
        self._secret_key = secret_key
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self.counted: Counted = _not_counted

    backend = "s3"

    @classmethod
    async def connect(
        cls,
        endpoint_url: str | None,
        bucket: str,
        region: str,
        access_key: str | None,
        secret_key: str | None,
    ) -> S3BlobStore:
        """Construct and :meth:`start` a store in one step."""
        store = cls(endpoint_url, bucket, region, access_key, secret_key)
        await store.start()
        return store

    async def start(self) -> None:
        """Create the client and make sure the bucket exists, creating it if missing."""
        if self._client is not None:
            return
        config = AioConfig(
            # botocore >= 1.36 adds CRC32 checksums to every request by default, which several
            # S3-compatible servers (older MinIO, Ceph, ...) reject.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Virtual-host addressing needs wildcard DNS that self-hosted servers rarely have.
            s3={"addressing_style": "path"},
        )
        client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                aws_access_key_id=self._access_key,
                aws_secret_access_key=self._secret_key,
                config=config,
            )
        )
        try:
            await self._ensure_bucket(client)
        except BaseException:
            await self._stack.aclose()
            raise
        self._client = client

    async def _ensure_bucket(self, client: Any) -> None:
        try:
            await client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _error_code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                raise
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            # us-east-1 is the default location and AWS rejects it as an explicit constraint.
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            await client.create_bucket(**kwargs)
        except ClientError as exc:
            # Another process starting at the same time may have won the race.
            if _error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise

    @property
    def _s3(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3BlobStore is not started (or already closed)")
        return self._client

    async def put(self, key: str, chunks: AsyncIterable[bytes] | bytes) -> BlobInfo:
        """Upload the blob: one ``PutObject`` up to 8 MiB, a multipart upload above.

        Streamed input is buffered one 8 MiB part at a time; a failure aborts the multipart
        upload so no parts are left billed and no object appears.
        """
        validate_key(key)
        client = self._s3
        if isinstance(chunks, bytes | bytearray | memoryview) and len(chunks) <= S3_PART_SIZE:
            await client.put_object(Bucket=self.bucket, Key=key, Body=bytes(chunks))
            self.counted(self.backend, "write", len(chunks))
            return BlobInfo(key, len(chunks))
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in _iter_chunks(chunks, S3_PART_SIZE):
                size += len(chunk)
                buffer += chunk
                # Strictly greater: the last part must not be empty, and a blob of exactly one
                # part size is cheaper as a single PutObject.
                while len(buffer) > S3_PART_SIZE:
                    if upload_id is None:
                        created = await client.create_multipart_upload(Bucket=self.bucket, Key=key)
                        upload_id = created["UploadId"]
                    await self._upload_part(key, upload_id, parts, bytes(buffer[:S3_PART_SIZE]))
                    del buffer[:S3_PART_SIZE]
            if upload_id is None:
                await client.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer))
            else:
                await self._upload_part(key, upload_id, parts, bytes(buffer))
                await client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            if upload_id is not None:
                with contextlib.suppress(Exception):
                    await client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id
                    )
            raise
        self.counted(self.backend, "write", size)
        return BlobInfo(key, size)

    async def _upload_part(
        self, key: str, upload_id: str, parts: list[dict[str, Any]], body: bytes
    ) -> None:
        number = len(parts) + 1
        answer = await self._s3.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Iterate over the bytes ``[start, end)``, with a ranged ``GetObject`` when needed.

        Invalid arguments raise :class:`ValueError` here; a missing blob raises
        :class:`BlobNotFound` from the first iteration, before any bytes. Close a partially
        consumed iterator (``contextlib.aclosing``) to return the connection promptly.
        """
        validate_key(key)
        _validate_range(start, end)
        return self._get_range(key, start, end)

    async def _get_range(self, key: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        client = self._s3
        if end == start:
            # HTTP ranges cannot express an empty range, but a missing blob must still raise.
            if not await self.exists(key):
                raise BlobNotFound(key)
            return
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            answer = await client.get_object(**kwargs)
        except ClientError as exc:
            if _is_missing(exc):
                raise BlobNotFound(key) from None
            if _error_code(exc) == "InvalidRange":
                # 416: the blob exists but ``start`` is at or past its end.
                return
            raise
        async with answer["Body"] as body:
            async for chunk in body.iter_chunks(CHUNK_SIZE):
                self.counted(self.backend, "read", len(chunk))
                yield chunk

    async def read(self, key: str) -> bytes:
        """Return the whole blob; raises :class:`BlobNotFound` when missing."""
        return b"".join([chunk async for chunk in self.open(key)])

    async def stat(self, key: str) -> BlobInfo | None:
        """``HeadObject``: the blob's size, or ``None`` when missing."""
        validate_key(key)
        try:
            answer = await self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        return BlobInfo(key, int(answer["ContentLength"]))

    async def exists(self, key: str) -> bool:
        """Tell whether a blob is stored under ``key``."""
        return await self.stat(key) is not None

    async def delete(self, key: str) -> bool:
        """Delete the object; ``True`` when it existed.

        S3's ``DeleteObject`` succeeds either way, hence the ``HeadObject`` first; two
        concurrent deletes may therefore both answer ``True``.
        """
        if await self.stat(key) is None:
            return False
        await self._s3.delete_object(Bucket=self.bucket, Key=key)
        return True

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Iterate over the keys starting with ``prefix`` (``ListObjectsV2``, paginated)."""
        _validate_prefix(prefix)
        return self._list(prefix)

    async def _list(self, prefix: str) -> AsyncIterator[str]:
        paginator = self._s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    async def presigned_url(self, key: str, expires_in: int) -> str | None:
        """A presigned ``GetObject`` URL valid for ``expires_in`` seconds (at most 7 days).

        Signing is local: the URL is returned even if the blob does not exist.
        """
        validate_key(key)
        _validate_expiry(expires_in)
        url: str = await self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )
        return url

    async def close(self) -> None:
        """Close the client and its connection pool; calling it twice is harmless."""
        self._client = None
        await self._stack.aclose()
