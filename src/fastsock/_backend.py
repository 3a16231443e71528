"""The one place that chooses between the compiled core and its pure twin.

``FASTSOCK_PURE`` set to ``1``/``yes``/``true``/``on`` selects the pure-Python
twin; unset, empty, ``0``/``no``/``false``/``off`` mean "use the compiled core
if it is installed".  On interpreters other than CPython the twin is always
used.  ``BACKEND`` reports what was actually loaded, and ``IMPORT_ERROR`` keeps
the reason the compiled core could not be imported (``None`` when it was, or
when it was not asked for).
"""
import os
import sys


def pure_requested(environ=os.environ):
    value = environ.get("FASTSOCK_PURE", "").strip().lower()
    return value not in ("", "0", "no", "false", "off")


IMPORT_ERROR = None
REASON = None

if pure_requested() or sys.implementation.name != "cpython":
    from . import _core_py as core
    BACKEND = "python"
    REASON = ("FASTSOCK_PURE is set" if pure_requested()
              else "%s is not CPython" % sys.implementation.name)
else:
    try:
        from . import _core as core
    except ImportError as exc:  # not built, or built for another interpreter
        from . import _core_py as core
        BACKEND = "python"
        IMPORT_ERROR = exc
        REASON = "the compiled core could not be imported: %s" % (exc,)
    else:
        BACKEND = "cython"


def load(name):
    """Return the core module for *name* (``"cython"`` or ``"python"``)."""
    if name == "cython":
        from . import _core
        return _core
    if name == "python":
        from . import _core_py
        return _core_py
    raise ValueError("unknown backend %r" % (name,))
