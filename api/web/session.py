"""Who is looking at a web page: the API token held in an HttpOnly cookie, checked per request.

A browser cannot send `Authorization: Bearer`, so the login form takes a token and keeps it in a
cookie (HttpOnly: no script reads it; SameSite=Strict: no other site's page or form sends it;
Path=/web: never sent to /api; Secure over https). Each request checks it with the same
`TokenFile.find` and `TokenRecord.allows` as api/auth.py, so a revoked token stops working on
its next page. There is no second kind of credential and no server-side session to expire.

`WebRoute` turns the refusals into what a browser needs: no or a dead token redirects to the
login page, a token without the scope gets a 403 page, an `AnnexError` gets an HTML error page
with the status api/problems.py gives it. Every response carries the security headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from api.auth import Scope, TokenFile, TokenRecord
from api.problems import status_of
from api.web.views import error_page
from evidence.errors import AnnexError

WEB = "/web"
COOKIE = "annex_web"
# A browser forgets the token after a working day; the server checks it on every request anyway.
SESSION_SECONDS = 8 * 3600
LOGIN = f"{WEB}/login"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` on our own
    # form posts, and the cross-site check below could not tell them from a foreign page's.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """No cookie, or its token is unknown or revoked: the browser goes to the login page."""


class Refused(Exception):
    """A 403: a live token whose scope does not cover the page, or a form from another site."""

    @classmethod
    def of(cls, record: TokenRecord, scope: Scope) -> Refused:
        return cls(f"token {record.id} has scope {record.scope}; this page needs {scope}")

    @classmethod
    def cross_site(cls) -> Refused:
        return cls("a form posted from another site is refused: use the form on this site")


def same_origin(request: Request) -> bool:
    """A browser's form post names its page's origin; one from another site (login CSRF: signing
    the victim in with the attacker's token) is refused. A client that sends no Origin (curl, a
    script) is not a browser page and passes; SameSite=Strict guards the cookie either way."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def find_token(request: Request, token: str | None) -> TokenRecord | None:
    if not token:
        return None
    tokens: TokenFile = request.app.state.tokens
    return tokens.find(token)


def require_cookie(scope: Scope) -> Callable[[Request], Awaitable[TokenRecord]]:
    """The web pages' one auth dependency: the cookie's token, live and allowed `scope`. On the
    event loop, as the API's `require` is: a stat and a few comparisons, no thread-pool trip."""

    async def check(request: Request) -> TokenRecord:
        record = find_token(request, request.cookies.get(COOKIE))
        if record is None:
            raise LoginRequired()
        if not record.allows(scope):
            raise Refused.of(record, scope)
        return record

    check.__name__ = f"web_{scope}"
    return check


def set_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_SECONDS,
        path=WEB,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE,
        path=WEB,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def login_redirect(request: Request) -> RedirectResponse:
    """To the login page, which sends the user back here (a path under /web only) afterwards."""
    target = request.url.path
    if request.method == "GET" and request.url.query:
        target += "?" + request.url.query
    return RedirectResponse(f"{LOGIN}?next={quote(target, safe='/')}", status_code=303)


def safe_next(target: str | None) -> str:
    """Where to go after login: a path under /web on this site, never another origin."""
    if not target or not target.startswith(WEB + "/") or target.startswith("//"):
        return WEB + "/"
    if "\\" in target or any(ord(c) < 0x20 for c in target):
        return WEB + "/"
    return target


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class WebRoute(APIRoute):
    """An APIRoute whose refusals and errors are pages, with the security headers on all."""

    def get_route_handler(self) -> Handler:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                if request.method == "POST" and not same_origin(request):
                    raise Refused.cross_site()
                response = await original(request)
            except LoginRequired:
                response = login_redirect(request)
            except Refused as exc:
                response = error_page(request, 403, str(exc))
            except AnnexError as exc:
                response = error_page(request, status_of(exc), str(exc))
            except RequestValidationError as exc:
                response = error_page(request, 422, _first_error(exc))
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return handler


def _first_error(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "the request is not valid"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "request"
    return f"{where}: {first.get('msg', 'not valid')}"
