"""RFC 9457 problem details: every failure of the API, mapped from the one exception hierarchy.

One handler turns an `AnnexError` into a status and an `application/problem+json` body; the few
failures only HTTP knows (no token, a wrong scope, a body too large, a replay) are `AnnexError`
subclasses defined here, so no route builds an error response by hand.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from evidence.errors import (
    AnnexError,
    AuthorityError,
    ConfigError,
    InputError,
    StoreError,
    TrustError,
    VerificationError,
)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://annex.dev/problems/"
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "what is wrong, and where"},
        "instance": {"type": "string"},
    },
}


class Unauthorized(AnnexError):
    """No bearer token, or one that is unknown or revoked."""

    http_status = 401


class Forbidden(AnnexError):
    """A valid token without the scope the route needs."""

    http_status = 403


class NotFound(InputError):
    http_status = 404


class Conflict(InputError):
    """The request would duplicate what the log already holds (a replayed envelope)."""

    http_status = 409


class TooLarge(InputError):
    http_status = 413


class Unprocessable(InputError):
    """A body that parses as HTTP but is not a well-formed envelope or statement."""

    http_status = 422


# First match wins: subclasses before their bases. TrustError is 403 here (a key the log does not
# trust is a refusal, not a malformed request), whatever the CLI's exit code says.
_STATUS: tuple[tuple[type[AnnexError], int], ...] = (
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TooLarge, 413),
    (Unprocessable, 422),
    (TrustError, 403),
    (AuthorityError, 403),  # a trusted key signing what its role may not
    (VerificationError, 422),
    (InputError, 400),
    (StoreError, 503),
    (ConfigError, 500),
)


def status_of(error: AnnexError) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return error.http_status


def problem(status: int, detail: str, instance: str, *, kind: str | None = None) -> JSONResponse:
    """A problem+json response; `kind` names the problem type (default: from the status)."""
    title = HTTPStatus(status).phrase
    slug = kind or title.lower().replace(" ", "-").replace("'", "")
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    headers = {"WWW-Authenticate": 'Bearer realm="annex"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _slug(error: AnnexError) -> str:
    name = type(error).__name__
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in name).lstrip("-")


async def _annex_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AnnexError)
    return problem(status_of(exc), str(exc), request.url.path, kind=_slug(exc))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    # the type Annex's own 422 (Unprocessable) has: one type URI per kind of error
    return problem(
        422, "; ".join(parts) or "invalid request", request.url.path, kind="unprocessable"
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, str(exc.detail), request.url.path)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A bug: a problem body that says so, without the exception's text (it may hold data)."""
    return problem(500, "an unexpected error; see the server log", request.url.path)


def install(app: FastAPI) -> None:
    """Registers the handlers: AnnexError, FastAPI's validation errors and Starlette's 404/405."""
    app.add_exception_handler(AnnexError, _annex_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


def problem_response(description: str) -> dict[str, Any]:
    """An OpenAPI response whose body is a problem (for a route's `responses=`)."""
    return {"description": description, "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}}


_DOCUMENTED = {
    400: "the request is well formed but names what the log cannot answer (the detail says why)",
    401: "no bearer token, or an unknown or revoked one",
    403: "the token lacks the route's scope",
    404: "the log holds no such entry, report, system or job",
    413: "the body is over the route's size limit; nothing was changed",
    422: "a parameter or the body is malformed (the detail names it); nothing was changed",
    500: "an unexpected error (the body does not carry its text)",
}


def document_problems(app: FastAPI, public: frozenset[str]) -> None:
    """Puts each route's refusals into the OpenAPI document as problem bodies: 401 and 403 where
    a token is needed, 422 where a parameter or body can be malformed (in place of FastAPI's
    own validation-error shape, which this app never sends), 404 where the path names
    something, 413 where a body is read, and 500. What a route documents itself is kept."""
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        statuses = [500]
        if route.path not in public:
            statuses += [401, 403]
        takes = route.dependant.path_params or route.dependant.query_params or route.body_field
        posts = "requestBody" in (route.openapi_extra or {})
        if takes or posts:
            statuses += [400, 422]
        if route.dependant.path_params:
            statuses.append(404)
        if posts:
            statuses.append(413)
        for status in sorted(statuses):
            if status not in route.responses and str(status) not in route.responses:
                route.responses[status] = problem_response(_DOCUMENTED[status])
