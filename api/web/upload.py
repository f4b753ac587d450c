"""Reading a dossier upload: multipart, bounded, parsed only after the caller is authenticated.

The route reads the form itself (not through FastAPI's `File()` parameters, which parse the body
before any dependency runs), so an unauthenticated request is redirected before a byte of its
body is read. The body is refused with 413 past MAX_UPLOAD, whether or not Content-Length says
so; the parts are spooled temporary files, gone when the form is closed. Nothing is kept.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from api.problems import TooLarge, Unprocessable

MAX_UPLOAD = 50 * 1024 * 1024
MAX_TRUST = 1024 * 1024
_SLACK = 64 * 1024  # multipart boundaries and part headers around the two files


_LIMITS = f"a dossier of at most {MAX_UPLOAD} bytes, a trust file of {MAX_TRUST}, the form"


@dataclass(frozen=True)
class Upload:
    pdf: bytes
    trust: bytes | None


async def _bounded(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the upload exceeds the limit of {limit} bytes ({_LIMITS})")
        yield chunk


async def read_upload(request: Request) -> Upload:
    """The `dossier` PDF and the optional `trust` file of a multipart form."""
    limit = MAX_UPLOAD + MAX_TRUST + _SLACK
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the upload is {declared} bytes; the limit is {limit} ({_LIMITS})")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise Unprocessable("send the dossier as multipart/form-data (field `dossier`)")
    parser = MultiPartParser(request.headers, _bounded(request, limit), max_files=2, max_fields=4)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise Unprocessable(f"the upload is not a valid form: {exc.message}") from None
    try:
        pdf = await _file(form.get("dossier"), "dossier", MAX_UPLOAD)
        if pdf is None:
            raise Unprocessable("choose a dossier PDF to upload (field `dossier`)")
        trust = await _file(form.get("trust"), "trust", MAX_TRUST)
        return Upload(pdf, trust)
    finally:
        await form.close()


async def _file(part: UploadFile | str | None, field: str, limit: int) -> bytes | None:
    """A file part's bytes; None when the field is absent or no file was chosen."""
    if part is None or isinstance(part, str):
        return None
    data = await part.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"the {field} file exceeds the limit of {limit} bytes")
    if not data:
        return None  # the field was left empty, or the file chosen is empty
    return data
