"""Ed25519 signatures made in a helper process, so that a large append signs while it writes.

Signing costs about as much as everything else an append does, and in one process the two
cannot overlap: `cryptography` releases the GIL while it signs, but a signing thread must take
the GIL back between signatures and waits for it behind the Python work of the writer. A child
process has its own GIL. The writer streams the messages of one chunk down a pipe and reads
64-byte signatures back in order while it checks, hashes and inserts the chunks already signed.

The child holds the log key in memory only, as the writer does; it gets the raw key on its
standard input (never a command line or a file) and answers with the public key first, so the
signatures of a child that loaded a different key are refused before any is used. It exits when
its input closes, which happens when the writer closes it or dies.

Wire format, both ways on plain pipes: the writer sends the 32-byte private key once, then per
chunk a little-endian u32 count, `count` u32 lengths and the messages back to back; the child
answers the public key once, then `count` signatures of 64 bytes per chunk.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.errors import SigningUnavailable, StoreError

SIGNATURE_BYTES = 64
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
_KEY_BYTES = 32
_U32 = struct.Struct("<I")


def _read_exactly(stream: IO[bytes], n: int) -> bytes:
    """`n` bytes from a pipe, or fewer only where it ended."""
    parts = []
    while n:
        part = stream.read(n)
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


class SigningProcess:
    """A child process that signs with one Ed25519 key, in order, chunk by chunk."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        raw = private_key.private_bytes_raw()
        public = private_key.public_key().public_bytes_raw()
        self.public_bytes = public
        self.owner_pid = os.getpid()  # a forked child must not write into this pipe too
        self._pending: list[int] = []
        # The child imports this module by name, from wherever this copy of Annex lives, and
        # not from the working directory (-P), which may hold a folder named `evidence`.
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-P", "-m", __name__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
                close_fds=True,
                env=env,
            )
        except OSError as exc:
            raise SigningUnavailable(f"cannot start the signing process: {exc}") from exc
        self._key_checked = False  # its answer is read with the first signatures: the child
        # starts (some 50 ms) while the writer checks the first chunks
        assert self._child.stdin is not None and self._child.stdout is not None
        self._in: IO[bytes] = self._child.stdin
        self._out: IO[bytes] = self._child.stdout
        self._send(raw)

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:  # a signal may cut a write to a pipe short
                view = view[self._in.write(view) or 0 :]
        except OSError as exc:  # BrokenPipeError: the child is gone
            raise self._failure(f"the signing process stopped: {exc}") from exc

    def _failure(self, message: str) -> StoreError:
        """A child that never answered its key is unavailable (the caller signs without it);
        one that stops after it did fails the append it was signing for."""
        return StoreError(message) if self._key_checked else SigningUnavailable(message)

    def submit(self, messages: Sequence[bytes]) -> None:
        """Queues a chunk; its signatures come back from `collect` after every earlier chunk's.

        Keep at most a few chunks of a few hundred messages outstanding: the child blocks once
        the signatures nobody collects fill its pipe (64 KiB, a thousand signatures).
        """
        lengths = struct.pack(f"<{len(messages) + 1}I", len(messages), *map(len, messages))
        self._send(lengths + b"".join(messages))
        self._pending.append(len(messages))

    def collect(self) -> list[bytes]:
        """The signatures of the oldest chunk submitted and not yet collected."""
        if not self._key_checked:
            if _read_exactly(self._out, len(self.public_bytes)) != self.public_bytes:
                raise SigningUnavailable("the signing process did not load the log key")
            self._key_checked = True
        count = self._pending.pop(0)
        data = _read_exactly(self._out, count * SIGNATURE_BYTES)
        if len(data) != count * SIGNATURE_BYTES:
            raise StoreError("the signing process stopped before it answered")
        return [data[i : i + SIGNATURE_BYTES] for i in range(0, len(data), SIGNATURE_BYTES)]

    @property
    def alive(self) -> bool:
        return self._child.poll() is None

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a child that died left a broken pipe
            self._in.close()
        try:
            self._child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        self._out.close()


def serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """The child's loop: load the key, then sign chunk after chunk until the input ends."""
    raw = _read_exactly(source, _KEY_BYTES)
    if len(raw) != _KEY_BYTES:
        return  # the writer went away before it sent the key
    key = Ed25519PrivateKey.from_private_bytes(raw)
    sink.write(key.public_key().public_bytes_raw())
    sink.flush()
    sign = key.sign
    while header := _read_exactly(source, _U32.size):
        (count,) = _U32.unpack(header)
        lengths = struct.unpack(f"<{count}I", _read_exactly(source, 4 * count))
        data = memoryview(_read_exactly(source, sum(lengths)))
        sigs = []
        at = 0
        for n in lengths:
            sigs.append(sign(data[at : at + n]))
            at += n
        sink.write(b"".join(sigs))
        sink.flush()


if __name__ == "__main__":
    # Ctrl-C in a terminal reaches the whole process group; the writer decides what happens,
    # and this process ends when the writer closes its input or dies.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(os.fdopen(0, "rb", buffering=0), os.fdopen(1, "wb", buffering=0))
