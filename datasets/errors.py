"""The error every dataset raises for bad input data (a missing, corrupt or impossible annotation or image).

Its message starts with the file and line (or record, or image path) and says what is wrong; main.py and
gaze360_main.py print it as one line and exit with status 2. It lives in its own file so the parsers, the sample
path (datasets/base.py) and the checks (datasets/validation.py) share it without importing one another.
"""
from __future__ import annotations

_WORKER_PREFIX = "Caught DataError"


class DataError(ValueError):
    """Bad input data; the first line of the message names the file and line (or record, or image)."""

    def __init__(self, message: str = ""):
        # A DataLoader worker's error comes back re-built by torch as "Caught DataError in DataLoader worker process
        # N.\nOriginal Traceback ...\ndatasets.errors.DataError: <message>": keep only the original message.
        if isinstance(message, str) and message.startswith(_WORKER_PREFIX) and "DataError: " in message:
            message = message.rsplit("DataError: ", 1)[1].rstrip("\n")
        super().__init__(message)


class MissingDataFile(DataError, FileNotFoundError):
    """A file the data needs (annotation file, image, frame, depth map) does not exist."""
