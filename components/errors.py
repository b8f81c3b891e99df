"""The one exception type for bad user input.

Entry points turn it into a single clear message and a non-zero exit; everything else is a bug and keeps its
traceback.
"""


class XstiltsInputError(Exception):
    """Bad input: a missing file, an unknown name, a malformed row, an unusable split or cache."""
