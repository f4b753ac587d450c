"""DSSE envelopes signed in a helper process, so that a large append signs while it writes.

Signing costs about as much as everything else an append does, and in one process the two
cannot overlap: `cryptography` releases the GIL while it signs, but a signing thread must take
the GIL back between signatures and waits for it behind the Python work of the writer. A child
process has its own GIL. The writer streams the canonical statements of one chunk down a pipe
and reads their envelopes and leaf hashes back in order while it checks and inserts the chunks
already signed. The child also writes the envelopes and hashes them, which balances the work of
the two processes: on two cores the writer was the slower.

The child holds the log key in memory only, as the writer does; it gets the raw key on its
standard input (never a command line or a file) and answers with the public key first, so the
envelopes of a child that loaded a different key are refused before any is used. It exits when
its input closes, which happens when the writer closes it or dies.

Wire format, both ways on plain pipes, integers little-endian u32: the writer sends the 32-byte
private key and the keyid (its length, then its ASCII) once, then per chunk a count, `count`
lengths and the statements back to back; the child answers the public key once, then per chunk
`count` envelope lengths, the envelopes back to back and their `count` 32-byte leaf hashes.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.dsse import IN_TOTO_PAYLOAD_TYPE, envelope_bytes, pae
from evidence.errors import SigningUnavailable, StoreError
from evidence.merkle import leaf_hash

HASH_BYTES = 32
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


def _split(data: bytes, lengths: Sequence[int]) -> list[bytes]:
    out = []
    at = 0
    for n in lengths:
        out.append(data[at : at + n])
        at += n
    return out


class SigningProcess:
    """A child process that signs in-toto statements into envelopes with one Ed25519 key, in
    order, chunk by chunk."""

    def __init__(self, private_key: Ed25519PrivateKey, keyid: str) -> None:
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
        self._key_checked = False  # its answer is read with the first envelopes: the child
        # starts (some 50 ms) while the writer checks the first chunks
        assert self._child.stdin is not None and self._child.stdout is not None
        self._in = self._child.stdin.fileno()
        self._out = self._child.stdout.fileno()
        os.set_blocking(self._in, False)
        self._inbox = bytearray()  # answers read while sending, not yet collected
        name = keyid.encode("ascii")
        self._send(raw + _U32.pack(len(name)) + name)

    def _send(self, data: bytes) -> None:
        """Writes to the child, reading its answers meanwhile: a child that cannot write its
        envelopes stops reading, and with large statements both pipes fill up."""
        view = memoryview(data)
        try:
            while view:
                try:
                    view = view[os.write(self._in, view) :]
                except BlockingIOError:
                    readable, _, _ = select.select([self._out], [self._in], [])
                    if readable:
                        self._receive(1 << 16)
        except OSError as exc:  # BrokenPipeError: the child is gone
            raise self._failure(f"the signing process stopped: {exc}") from exc

    def _receive(self, most: int) -> None:
        """Reads what the child has written, up to `most` bytes."""
        try:
            data = os.read(self._out, most)
        except OSError as exc:
            raise self._failure(f"the signing process stopped: {exc}") from exc
        if not data:
            raise self._failure("the signing process stopped before it answered")
        self._inbox += data

    def _take(self, n: int) -> bytes:
        """The next `n` bytes of the child's answers."""
        while len(self._inbox) < n:
            self._receive(max(n - len(self._inbox), 1 << 16))
        data = bytes(self._inbox[:n])
        del self._inbox[:n]
        return data

    def _failure(self, message: str) -> StoreError:
        """A child that never answered its key is unavailable (the caller signs without it);
        one that stops after it did fails the append it was signing for."""
        return StoreError(message) if self._key_checked else SigningUnavailable(message)

    def submit(self, payloads: Sequence[bytes]) -> None:
        """Queues a chunk of canonical statements; their envelopes come back from `collect`
        after every earlier chunk's.

        Keep at most a few chunks of a few hundred statements outstanding: the child blocks
        once the envelopes nobody collects fill its pipe (64 KiB).
        """
        lengths = struct.pack(f"<{len(payloads) + 1}I", len(payloads), *map(len, payloads))
        self._send(lengths + b"".join(payloads))
        self._pending.append(len(payloads))

    def collect(self) -> list[tuple[bytes, bytes]]:
        """(envelope, leaf hash) of each statement of the oldest chunk not yet collected."""
        if not self._key_checked:
            if self._take(len(self.public_bytes)) != self.public_bytes:
                raise SigningUnavailable("the signing process did not load the log key")
            self._key_checked = True
        count = self._pending.pop(0)
        lengths = struct.unpack(f"<{count}I", self._take(4 * count))
        envelopes = _split(self._take(sum(lengths)), lengths)
        leaves = _split(self._take(HASH_BYTES * count), [HASH_BYTES] * count)
        return list(zip(envelopes, leaves, strict=True))

    @property
    def alive(self) -> bool:
        return self._child.poll() is None

    def close(self) -> None:
        assert self._child.stdin is not None and self._child.stdout is not None
        with contextlib.suppress(OSError):  # a child that died left a broken pipe
            self._child.stdin.close()
        try:
            self._child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        self._child.stdout.close()


def serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """The child's loop: load the key, then sign chunk after chunk until the input ends."""
    raw = _read_exactly(source, _KEY_BYTES)
    size = _read_exactly(source, _U32.size)
    if len(raw) != _KEY_BYTES or len(size) != _U32.size:
        return  # the writer went away before it sent the key
    keyid = _read_exactly(source, _U32.unpack(size)[0]).decode("ascii")
    key = Ed25519PrivateKey.from_private_bytes(raw)
    sink.write(key.public_key().public_bytes_raw())
    sink.flush()
    sign = key.sign
    while header := _read_exactly(source, _U32.size):
        (count,) = _U32.unpack(header)
        lengths = struct.unpack(f"<{count}I", _read_exactly(source, 4 * count))
        envelopes = [
            envelope_bytes(payload, keyid, sign(pae(IN_TOTO_PAYLOAD_TYPE, payload)))
            for payload in _split(_read_exactly(source, sum(lengths)), lengths)
        ]
        head = struct.pack(f"<{count}I", *map(len, envelopes))
        sink.write(b"".join([head, *envelopes, *map(leaf_hash, envelopes)]))
        sink.flush()


if __name__ == "__main__":
    # Ctrl-C in a terminal reaches the whole process group; the writer decides what happens,
    # and this process ends when the writer closes its input or dies.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(os.fdopen(0, "rb", buffering=0), os.fdopen(1, "wb", buffering=0))
