"""The auditor's web pages (server-rendered, no script), under /web: see api/web/routes.py."""

from api.web.routes import PUBLIC_WEB_PATHS, add_web

__all__ = ["PUBLIC_WEB_PATHS", "add_web"]
