"""`annex serve`: the REST service (api/app.py) under uvicorn, on loopback unless told otherwise."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from api.app import create_app
from api.cli_base import HomeOpt, app, command, open_home


@command(app, "serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    home: HomeOpt = None,
) -> None:
    """Serve the REST API (/api/v1, OpenAPI at /api/v1/docs); tokens: `annex tokens create`."""
    target = open_home(home)
    target.open_store().close()  # refuse to start on a directory with no log
    uvicorn.run(create_app(target), host=host, port=port, log_level="info", server_header=False)
