"""The server's private files: 0600, written whole or not at all, replaced only when asked."""

from __future__ import annotations

import errno
import stat
import subprocess
import sys
from pathlib import Path

from dispatch.files import write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_private_file_is_written_whole_and_for_its_user_alone(tmp_path: Path) -> None:
    path = tmp_path / "kept.txt"
    assert write_private(path, "first\n", replace=True)
    assert path.read_text() == "first\n"
    assert mode(path) == 0o600
    # One readable by everyone is replaced by a private one.
    path.chmod(0o644)
    assert write_private(path, "second\n", replace=True)
    assert (path.read_text(), mode(path)) == ("second\n", 0o600)
    assert [p.name for p in tmp_path.iterdir()] == ["kept.txt"]  # no temporary file left


def test_a_file_already_there_is_kept_when_it_is_not_to_be_replaced(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    assert write_private(path, "the first process's", replace=False)
    assert not write_private(path, "a later process's", replace=False)
    assert path.read_text() == "the first process's"
    assert mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]


def test_a_write_that_fails_half_way_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    """A disk that fills up in the middle of the write (here a file size limit, in a process
    of its own): the file there before is untouched, a new one never appears cut short, and
    no temporary file is left behind."""
    there = tmp_path / "there.txt"
    there.write_text("as it was\n")
    absent = tmp_path / "absent.txt"
    probe = (
        "import resource, signal, sys; from pathlib import Path; "
        "from dispatch.files import write_private; "
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
        "results = []\n"
        "for name, replace in ((sys.argv[1], True), (sys.argv[2], False)):\n"
        "    try:\n"
        "        write_private(Path(name), 'x' * 100_000, replace=replace)\n"
        "        results.append('written')\n"
        "    except OSError as error:\n"
        "        results.append(error.__class__.__name__ + str(error.errno))\n"
        "print(*results)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(there), str(absent)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    too_large = f"OSError{errno.EFBIG}"
    assert done.stdout.split() == [too_large, too_large], done.stdout + done.stderr
    assert there.read_text() == "as it was\n"
    assert not absent.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["there.txt"]
