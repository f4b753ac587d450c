"""Worker processes for a large inference-log ingest: each digests byte ranges of one open file.

Not `multiprocessing`: with its start methods other than fork, every worker re-runs the parent's
main script before its first task, which for the `annex` console script is the whole CLI (about
a second of CPU per worker, measured: a tenth of a million-line ingest), and fork is unsafe in a
process that runs threads. A worker here is a fresh interpreter that imports only
collectors/inference_lines.py (standard library, orjson and `rfc8785`).

The parent passes its open file descriptor (so a worker reads the very file the parent read,
even if the path is replaced meanwhile) and talks over the worker's stdin and stdout. A request
is one text line, "first offset length": a range of whole lines, the first numbered `first`.
An answer is an 8-byte big-endian length and a pickle of ("ok", (stats, digested)),
("refused", message) for a bad line, or ("crashed", traceback). Requests are a few bytes and at
most two are in flight per worker, so the parent never blocks writing; it reads the answers in
the order it asked, each from the worker it asked.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import struct
import subprocess
import sys
import traceback
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from collectors.inference_lines import digest_chunk
from evidence.errors import CollectorError

IN_FLIGHT = 2  # requests per worker: one being digested, one waiting
_LENGTH = struct.Struct(">Q")
_ROOT = str(Path(__file__).resolve().parents[1])  # the directory holding `collectors`
_STOP_SECONDS = 5
_SERVE = "import collectors.line_workers as w; w.serve()"


class LineWorkers:
    """`count` worker processes over the open file `fd` (named `where` in messages)."""

    def __init__(self, fd: int, where: Path, count: int) -> None:
        self.fd = fd
        self.where = where
        self.count = count
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> LineWorkers:
        # -P: the working directory is not put on sys.path (a `collectors` there is not ours).
        code = f"import sys; sys.path.insert(0, {_ROOT!r}); {_SERVE}"
        try:
            for _ in range(self.count):
                self._procs.append(
                    subprocess.Popen(
                        [sys.executable, "-P", "-c", code, str(self.fd), str(self.where)],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        pass_fds=(self.fd,),
                        # not in the terminal's process group: Ctrl-C reaches the parent alone,
                        # which stops the workers, instead of each printing its traceback
                        start_new_session=True,
                    )
                )
        except OSError as exc:
            self.__exit__(CollectorError)
            raise CollectorError(f"cannot start an ingest worker: {exc.strerror}") from None
        return self

    def __exit__(self, failed: type[BaseException] | None = None, *_: object) -> None:
        """Ends the workers: after the last answer by closing their requests; on an error or an
        interrupt at once (a worker part-way through a chunk would block writing its answer)."""
        for proc in self._procs:
            if failed is not None:
                proc.kill()
            elif proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()  # end of requests: the worker exits
        for proc in self._procs:
            try:
                proc.wait(_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        self._procs.clear()

    def run(self, ranges: Iterator[tuple[int, int, int]]) -> Iterator[Any]:
        """The answer for each (first, offset, length), in order; raises the first refusal."""
        pending: deque[subprocess.Popen[bytes]] = deque()
        for asked, (first, offset, length) in enumerate(ranges):
            proc = self._procs[asked % self.count]
            assert proc.stdin is not None
            try:
                proc.stdin.write(b"%d %d %d\n" % (first, offset, length))
                proc.stdin.flush()
            except BrokenPipeError:
                raise self._died(proc) from None
            pending.append(proc)
            if len(pending) >= IN_FLIGHT * self.count:
                yield self._answer(pending.popleft())
        while pending:
            yield self._answer(pending.popleft())

    def _answer(self, proc: subprocess.Popen[bytes]) -> Any:
        assert proc.stdout is not None
        head = proc.stdout.read(_LENGTH.size)
        body = proc.stdout.read(_LENGTH.unpack(head)[0]) if len(head) == _LENGTH.size else b""
        if not body:
            raise self._died(proc)
        kind, value = pickle.loads(body)
        if kind == "refused":
            raise CollectorError(value)
        if kind == "crashed":
            raise RuntimeError(f"an ingest worker failed:\n{value}")
        return value

    def _died(self, proc: subprocess.Popen[bytes]) -> CollectorError:
        try:
            code = proc.wait(_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
        return CollectorError(
            f"{self.where}: an ingest worker stopped before it answered (exit status {code})"
        )


def serve() -> None:
    """A worker's loop: digests each requested range until stdin closes."""
    fd, where = int(sys.argv[1]), Path(sys.argv[2])
    answers = sys.stdout.buffer
    for request in sys.stdin.buffer:
        first, offset, length = map(int, request.split())
        try:
            lines = read_lines(fd, offset, length, where)
            answer: tuple[str, Any] = ("ok", digest_chunk(where, first, lines))
        except CollectorError as exc:
            answer = ("refused", str(exc))
        except OSError as exc:
            answer = ("refused", f"cannot read {where}: {exc.strerror}")
        except Exception:  # a bug: told to the parent whole, never a silent wrong digest
            answer = ("crashed", traceback.format_exc())
        body = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        answers.write(_LENGTH.pack(len(body)))
        answers.write(body)
        answers.flush()


def read_lines(fd: int, offset: int, length: int, where: Path) -> list[bytes]:
    """The lines of a range of the open file; CollectorError if the file is shorter now."""
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise CollectorError(f"{where} changed while it was read: ingest it again")
    return split_lines(data)


def split_lines(data: bytes) -> list[bytes]:
    """Lines as `readlines` cuts them: at b"\\n" only, each keeping its newline."""
    return io.BytesIO(data).readlines()
