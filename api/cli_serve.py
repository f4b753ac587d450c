"""`annex serve`: the REST service (api/app.py) under uvicorn, on loopback unless told otherwise,
with the configuration file's sweeps on their schedules (api/sweeps/scheduler.py)."""

from __future__ import annotations

import gc
import logging
import re
import socket
from pathlib import Path
from typing import Annotated

import typer

from api.cli_base import HomeOpt, app, command
from api.cli_gpu import site_labels
from api.cli_sweep import ConfigOpt, config_path, declared_since
from api.output import stderr
from api.settings import get_settings
from api.sweeps.config import SweepConfig, load_config
from api.sweeps.runner import Boundaries
from evidence.errors import AnnexError, InputError

_TOKEN_IN_QUERY = re.compile(r"([?&](?:access_)?token=)[^&\s]*", re.IGNORECASE)


class RedactTokens(logging.Filter):
    """Takes a token sent in a query string (refused, but still requested) out of the access
    log's line: a secret written to a log file is a secret shared with everyone who reads it."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(
                _TOKEN_IN_QUERY.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in args
            )
        elif isinstance(record.msg, str):
            record.msg = _TOKEN_IN_QUERY.sub(r"\1[redacted]", record.msg)
        return True


def _check_address(host: str, port: int) -> None:
    """InputError when the address cannot be listened on (in use, not this host's): uvicorn
    would say so in its log and exit 3, which is none of Annex's exit codes."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"--host {host}: not an address of this host ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


@command(app, "serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    sweeps: Annotated[
        bool,
        typer.Option("--sweeps/--no-sweeps", help="Run the configuration file's sweeps."),
    ] = True,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Serve the REST API (/api/v1, OpenAPI at /api/v1/docs); tokens: `annex tokens create`.

    Also runs the sweeps the configuration file declares, on their schedules (--no-sweeps: not;
    the metrics still judge them).
    """
    # Imported here: the web stack costs every other command a third of a second to load.
    import uvicorn

    from api.app import create_app
    from api.sweeps.scheduler import start_scheduler

    settings = get_settings(home)
    target = settings.open_home()
    target.open_store().close()  # refuse to start on a directory with no log
    _check_address(host, port)
    path = config_path(settings, config)
    explicit = config is not None or settings.config is not None
    declared = _sweeps(path, explicit=explicit) if sweeps else _watched(path)
    service = create_app(target)
    service.state.sweep_schedules = tuple(declared.schedule(s) for s in declared.sweeps)
    service.state.sweeps_declared_since = declared_since(path)
    scheduler = None
    if sweeps and declared.sweeps:
        labels = site_labels(settings, site=None, country=None, operator=None)
        scheduler = start_scheduler(target, declared, boundaries=Boundaries(site=labels))
    # What was built until now lives as long as the process: out of the collector's sight, so a
    # full collection under load walks only what requests made (the 30-80 ms tail it cut).
    gc.freeze()
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    try:
        uvicorn.run(service, host=host, port=port, log_level="info", server_header=False)
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)


def _watched(path: Path) -> SweepConfig:
    """With --no-sweeps, cron or timers run the sweeps: the file is still read, so the metrics
    count a declared sweep that never ran as missed. A bad file is reported, not fatal: it is
    the runs' to refuse."""
    if not path.exists():
        return SweepConfig()
    try:
        return load_config(path)
    except AnnexError as exc:
        stderr.print(f"warning: sweeps not shown in the metrics: {exc}")
        return SweepConfig()


def _sweeps(path: Path, *, explicit: bool) -> SweepConfig:
    """The configuration; none at the default place means no sweeps, a bad one refuses to start."""
    if not explicit and not path.exists():
        return SweepConfig()
    return load_config(path)
