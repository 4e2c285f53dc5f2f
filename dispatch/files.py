"""Files the server keeps for itself: private, and written whole or not at all."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_private(path: Path, text: str, *, replace: bool) -> bool:
    """Write ``text`` to ``path``, readable and writable by this user alone (0600), whole or
    not at all: a crash or a full disk leaves at most a stray temporary file beside it, never
    ``path`` cut short or empty. With ``replace`` a file already at ``path`` is replaced;
    without, it is kept as it is (another process wrote it first) and False is returned.

    Once this returns True the file is on disk under its name, its directory synced too: what
    the caller does next (commit accounts whose passwords it holds, hand out tokens signed
    with it) may count on it surviving a power loss."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            try:
                # A link, not a rename: it never replaces a file that is already there.
                os.link(temporary, path)
            except FileExistsError:
                return False
    finally:
        temporary.unlink(missing_ok=True)
    sync_folder(path.parent)
    return True


def sync_folder(folder: Path) -> None:
    """Sync ``folder`` itself: a name just given to a file in it (a rename, a link) is an entry
    of the folder, and without this a power loss can take it back, or bring back the file that
    name replaced, though the file's own data was synced."""
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
