"""Import regopy so that rego-cpp does not leak memory: libstdc++ in the global symbol scope first.

Measured on Linux (glibc, regopy 1.5.2): when a Python extension module that
links the system libstdc++ is imported before regopy, Python's ``dlopen``
loads libstdc++ with ``RTLD_LOCAL``, and rego-cpp's library, loaded after it,
then leaks about 650 KB per evaluation: 100 decisions grow the process by
65 MB, for ever. aiohttp is such a module (through frozenlist's C++
extension), and the ``opa`` extra installs it: a service that imports the OPA
client before the rego engine would grow until it is killed (this project's
test suite grew past 24 GB). Loading libstdc++ with ``RTLD_GLOBAL`` before
regopy loads its library (a promotion when it is already loaded locally, a
no-op when it is global) removes the leak; once regopy's library is loaded
it is too late, so every import of regopy in this package goes through
:func:`import_regopy`. It promotes only when libstdc++ is already in the
process: a global libstdc++ measured rego-cpp 7–10% slower, and when regopy
loads it itself there is no leak to prevent.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from types import ModuleType

__all__ = ["import_regopy", "LIBSTDCXX"]

log = logging.getLogger(__name__)

#: The GNU C++ runtime's soname on Linux.
LIBSTDCXX = "libstdc++.so.6"


def import_regopy() -> ModuleType:
    """``import regopy``, with libstdc++ made global first (see the module docstring).

    Raises:
        ImportError: regopy is not installed.
    """
    if "regopy" not in sys.modules and sys.platform.startswith("linux") and _libstdcxx_loaded():
        try:
            ctypes.CDLL(LIBSTDCXX, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:  # no GNU C++ runtime (musl, a static build): nothing to promote
            log.debug("could not load %s globally before regopy: %s", LIBSTDCXX, exc)
    import regopy

    return regopy


def _libstdcxx_loaded() -> bool:
    """Whether the process has libstdc++ mapped already (loaded by another extension module)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any("/libstdc++.so" in line for line in maps)
    except OSError:
        return True  # cannot tell: promote, which is harmless
