"""The exceptions that end a command without a traceback: bad user input, and a stop by a signal.

Entry points turn them into a single clear message and a non-zero exit; everything else is a bug and keeps its
traceback.
"""

import signal
from pathlib import Path


class XstiltsInputError(Exception):
    """Bad input: a missing file, an unknown name, a malformed row, an unusable split or cache."""


def not_utf8(path, error: UnicodeDecodeError) -> XstiltsInputError:
    """The error for a file that a UTF-8 read of `path` failed on (`error`), naming the line, the byte's offset in the
    file and the byte: the decoder's own offset counts from the chunk it was given, so the file is decoded again."""
    data = Path(path).read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as whole_file:
        line = data.count(b"\n", 0, whole_file.start) + 1
        return XstiltsInputError(f"{path}:{line}: byte 0x{data[whole_file.start]:02x} at byte offset "
                                 f"{whole_file.start} is not UTF-8 ({whole_file.reason}); expected a UTF-8 text file")
    return XstiltsInputError(f"{path}: not UTF-8 ({error})")  # the file changed since the failed read


class Interrupted(KeyboardInterrupt):
    """A phase stopped by a signal (SIGTERM, or SIGINT: Ctrl-C), raised where it runs so that its run ends KILLED,
    not FAILED (`components.tracking.phase_run`); a KeyboardInterrupt, so that what catches Ctrl-C catches it too.
    The command exits with 128 + the signal's number, as a shell reports a process killed by it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)
