"""Reading pickles a user downloads (GOO's annotation files) without running code: an unpickler that builds only the
Python types a named allowlist admits.

`pickle.load` calls whatever callable a file names (`os.system`, `subprocess.Popen`, `builtins.eval`, ...), so a
doctored annotation file runs code the moment it is read. `load_restricted` builds the containers and scalars the
pickle opcodes make by themselves (dict, list, tuple, str, bytes, int, float, bool, None) plus the globals of
`allowed`; any other global is refused before it is called, with a DataError naming the file and the refused
`module.name`. docs/trust.md lists what each file the framework reads may contain.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Iterable

from datasets.errors import DataError, MissingDataFile

# numpy arrays and numpy scalars as numpy 1.x ("numpy.core") and 2.x ("numpy._core") pickle them: rebuilt from their
# shape, dtype and raw bytes; an object array's elements go through this unpickler too.
NUMPY_GLOBALS = frozenset(
    (module, name)
    for package in ("numpy.core", "numpy._core")
    for module, name in ((f"{package}.multiarray", "_reconstruct"), (f"{package}.multiarray", "scalar"),
                         (f"{package}.numeric", "_frombuffer"))
) | {("numpy", "ndarray"), ("numpy", "dtype")}
# Plain Python values that protocols 0-3 (and Python 2) pickle through a global rather than an opcode of their own.
PLAIN_GLOBALS = frozenset({
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"), ("builtins", "complex"),
    ("__builtin__", "set"), ("__builtin__", "frozenset"), ("__builtin__", "bytearray"), ("__builtin__", "complex"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # how protocol 2 writes bytes: _codecs.encode(text, "latin1")
})


class RefusedPickle(DataError):
    """A pickle names a Python object outside the allowlist of what such files contain."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, allowed: frozenset[tuple[str, str]], source: str, contents: str):
        super().__init__(file)
        self.allowed, self.source, self.contents = allowed, source, contents

    def find_class(self, module: str, name: str):
        if (module, name) not in self.allowed:
            raise RefusedPickle(
                f"{self.source}: refused to unpickle it: it names the Python object {module}.{name}, which such "
                f"files do not contain ({self.contents}); unpickling an unexpected object can run code, so nothing "
                "was loaded. Use an intact copy of the release file (docs/trust.md)")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise RefusedPickle(f"{self.source}: refused to unpickle it: it holds a persistent reference ({pid!r}), "
                            f"which such files do not contain ({self.contents})")


def load_restricted(path: str | Path, allowed: Iterable[tuple[str, str]], what: str, contents: str) -> Any:
    """The object pickled in `path`, built from plain values and the `allowed` (module, name) globals only.

    what: the kind of file, for messages ("GOO annotation pickle"); contents: what such files hold, said when a
    global is refused. A missing file is a MissingDataFile; a refused global a RefusedPickle; bytes that are no
    pickle a DataError saying so."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataFile(f"{path}: {what} does not exist")
    try:
        with open(path, "rb") as handle:
            return _RestrictedUnpickler(handle, frozenset(allowed), str(path), contents).load()
    except RefusedPickle:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            KeyError, UnicodeDecodeError, MemoryError, RecursionError) as error:
        raise DataError(f"{path}: not a readable {what} ({type(error).__name__}: {error})") from None
    except OSError as error:  # no permission, an I/O error
        raise DataError(f"{path}: the {what} cannot be read ({error.strerror or error})") from None
