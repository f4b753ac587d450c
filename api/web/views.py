"""Rendering the web pages: one Jinja2 environment over api/templates/web/, autoescape on.

The report pages reuse the report renderer itself: `document_markup` takes `render_html(doc)`,
the very HTML the PDF is printed from, and keeps its body. Two rewrites make it a web page, both
on markup the report template writes (values from the log or a card are escaped by then, so no
value can look like them): a citation's in-page link `href="#entry-N"` becomes the entry's page
`/web/entries/N`, and the inlined stylesheet is dropped because the page links the same file
(an inline <style> would need 'unsafe-inline' in the Content-Security-Policy).
"""

from __future__ import annotations

import re
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from reports.document import Document
from reports.render import render_html, ts

TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "web"
_BODY = re.compile(r"<body\b[^>]*>(.*)</body>", re.DOTALL)
_CITE_LINK = 'href="#entry-'


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["ts"] = ts
    return env


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page from api/templates/web/<name>, with the signed-in token's name if any."""
    html = environment().get_template(name).render(path=request.url.path, **context)
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return page(
        request,
        "error.html.j2",
        status,
        code=status,
        phrase=HTTPStatus(status).phrase,
        message=message,
    )


def document_markup(doc: Document) -> Markup:
    """The body of the report's own HTML, its citations linked to the entries' pages."""
    found = _BODY.search(render_html(doc))
    if found is None:  # the report template always writes a body; a change there fails tests
        raise RuntimeError("the report HTML has no <body>")
    body = found.group(1).replace(_CITE_LINK, 'href="/web/entries/')
    return Markup(body)  # the report renderer's own output, every value escaped there
