"""Work-around for a reference-count bug of PySide6 6.12.0 on CPython 3.11.

With PySide6-Essentials 6.12.0 (abi3 wheel) on CPython 3.11, every call of a Qt method that returns
``void`` (``QPainter.setPen``, ``QColor.setAlpha``, ``QWidget.update``...) returns ``None`` without
taking a reference to it, so ``None``'s reference count drops by one per call. From Python 3.12 on
``None`` is immortal and nothing happens; on 3.11 the interpreter aborts with
``Fatal Python error: none_dealloc`` once the count reaches zero: a few hundred repaints of the
planning window (a drag of a few seconds). PySide6 6.11.2 does not have the bug.

:func:`guard_none_refcount` measures the leak once and, only when it is there, adds a very large
number of references to ``None`` (enough for weeks of painting), so the app and the tests cannot
abort. The real fix is a PySide6 without the bug (or Python >= 3.12); the guard then does nothing.
"""

from __future__ import annotations

import ctypes
import sys

#: References added to None when the leak is detected (2**40: about 12 days at a million leaks/s).
EXTRA_NONE_REFERENCES = 1 << 40

_checked = False
_leaking = False


def void_calls_leak_none() -> bool:
    """True when a void Qt method call loses a reference to ``None`` in this interpreter."""
    from PySide6.QtGui import QColor

    color = QColor(1, 2, 3)
    before = sys.getrefcount(None)
    for _ in range(100):
        color.setAlpha(7)
    return sys.getrefcount(None) < before - 50


def guard_none_refcount() -> bool:
    """Protect the interpreter against the leak (once per process); True when the guard was needed."""
    global _checked, _leaking
    if _checked:
        return _leaking
    _checked = True
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False  # None is immortal there
    _leaking = void_calls_leak_none()
    if _leaking:
        # CPython < 3.12: ob_refcnt is the first field (Py_ssize_t) of every object
        ref = ctypes.c_ssize_t.from_address(id(None))
        ref.value += EXTRA_NONE_REFERENCES
    return _leaking


__all__ = ["guard_none_refcount", "void_calls_leak_none", "EXTRA_NONE_REFERENCES"]
