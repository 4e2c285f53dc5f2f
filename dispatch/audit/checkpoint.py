"""Checkpoints: every incident's chain head at one moment, kept by the office outside the
database.

The chains' hash is SHA-256 without a key: whoever can write the database can change an event
and compute its chain again, and the chain then holds. A chain only grows, though: the events
the server adds come after the head it had. So a head noted outside the database (the
incident's id, the head's seq and hash) must still be in the chain later, at that seq, with
that hash; an incident rewritten or removed since fails that, while new events and new
incidents do not.

The file is text, one line an incident, in the order verify walked them::

    # dispatch audit checkpoint 1
    # taken 2026-04-01T08:00:03.120000+08:00
    6c1f0e... 12 9b2d4f...
    # 1 incidents, 12 events
    # sha256 3e0a5c...

The last line is the SHA-256 of everything before it, so a damaged or truncated copy is
refused rather than read as a town with fewer incidents; it is no seal against someone who
edits the file and computes it again (the file's safety is where the office keeps it).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from dispatch.files import sync_folder
from dispatch.schemas import show_time

FIRST_LINE = "# dispatch audit checkpoint 1"
TAKEN = "# taken "
DIGEST = "# sha256 "
HASH = re.compile(r"[0-9a-f]{64}")
SEQ = re.compile(r"[1-9][0-9]{0,17}")


class CheckpointError(Exception):
    """A checkpoint that cannot be read or written; the message says why, in one line."""


class FolderNotSynced(Exception):
    """The checkpoint was written and is in place, but its folder could not be synced: until
    the folder reaches the disk, a power loss may bring the earlier checkpoint back at that
    path (or none). The message is the system's reason."""


@dataclass(frozen=True)
class Checkpoint:
    # Each incident's chain head when the checkpoint was taken: (seq, hash).
    heads: dict[str, tuple[int, str]]
    taken: str | None


def read(path: Path) -> Checkpoint:
    """The checkpoint in ``path``, whole and as written, or CheckpointError."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"cannot read it: {error.strerror or error}") from None
    if not data.startswith(FIRST_LINE.encode() + b"\n"):
        raise CheckpointError(
            f"not a checkpoint of dispatch audit verify: its first line is not {FIRST_LINE!r}"
        )
    body_end = data.rfind(b"\n", 0, len(data) - 1) + 1
    last = data[body_end:]
    if not (last.startswith(DIGEST.encode()) and last.endswith(b"\n")):
        raise CheckpointError("incomplete (cut short?): it does not end with its sha256 line")
    digest = last[len(DIGEST) : -1].decode("ascii", errors="replace")
    if hashlib.sha256(data[:body_end]).hexdigest() != digest:
        raise CheckpointError("damaged: its content does not match its sha256 line")
    try:
        text = data[:body_end].decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError("damaged: it is not UTF-8 text") from None
    heads: dict[str, tuple[int, str]] = {}
    taken: str | None = None
    for number, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("#"):
            if line.startswith(TAKEN):
                taken = line[len(TAKEN) :]
            continue
        parts = line.rsplit(" ", 2)
        if len(parts) != 3 or not parts[0] or not SEQ.fullmatch(parts[1]):
            raise CheckpointError(f"line {number}: not '<incident id> <seq> <hash>'")
        incident_id, seq, hash_ = parts
        if not HASH.fullmatch(hash_):
            raise CheckpointError(f"line {number}: {hash_!r} is not a SHA-256 in hex")
        if incident_id in heads:
            raise CheckpointError(f"line {number}: incident {incident_id} a second time")
        heads[incident_id] = (int(seq), hash_)
    return Checkpoint(heads, taken)


class Writer:
    """A checkpoint written as verify walks the incidents: to a file of its own next to
    ``path``, put in ``path``'s place only once the whole walk held (``finish``), so a failed
    verification leaves no checkpoint and an earlier one where it was."""

    def __init__(self, path: Path, taken: datetime) -> None:
        self.path = path
        self.incidents = 0
        # A name of its own, not the process id: a verify that died writing (the power lost)
        # leaves its part behind, and the next one may run as the same process id (1 in a
        # container), where opening it exclusively was refused.
        self._temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.part")
        self._digest = hashlib.sha256()
        try:
            self._file: IO[bytes] = open(self._temporary, "xb")  # noqa: SIM115
        except OSError as error:
            raise CheckpointError(f"cannot write it: {error.strerror or error}") from None
        self._write(f"{FIRST_LINE}\n{TAKEN}{show_time(taken)}\n")

    def _write(self, text: str) -> None:
        data = text.encode()
        self._digest.update(data)
        self._file.write(data)

    def add(self, incident_id: str, seq: int, hash_: str) -> None:
        if "\n" in incident_id or "\r" in incident_id or not incident_id:
            # Never an id the server gives (32 hex digits); one line each could not hold it.
            self.discard()
            raise CheckpointError(f"incident id {incident_id!r} cannot be written on one line")
        self._write(f"{incident_id} {seq} {hash_}\n")
        self.incidents += 1

    def finish(self, events: int) -> None:
        try:
            self._write(f"# {self.incidents} incidents, {events} events\n")
            self._file.write(f"{DIGEST}{self._digest.hexdigest()}\n".encode())
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._temporary, self.path)
        except OSError as error:
            self.discard()
            raise CheckpointError(f"cannot write it: {error.strerror or error}") from None
        try:
            # The replace is the folder's: unsynced, a power loss can bring the earlier
            # checkpoint back at this path, though this one was reported written.
            sync_folder(self.path.parent)
        except OSError as error:
            # Not "cannot write it": it is written, and read from that path from now on.
            raise FolderNotSynced(error.strerror or str(error)) from None

    def discard(self) -> None:
        self._file.close()
        self._temporary.unlink(missing_ok=True)
