"""The Qt binding must not leak references to None.

PySide6 6.12.0 on Python 3.11 drops one reference to None on every call of a method that returns
nothing (QPainter.drawLine, QColor.setAlpha, QWidget.update...). The interpreter then aborts with
"Fatal Python error: none_dealloc" after a few seconds of dragging or scrolling, losing the session.
requirements.txt pins a version without the leak; this test keeps a future upgrade from bringing it
back (on Python 3.12+ None is immortal and the count cannot drop).
"""

from __future__ import annotations

import sys


def test_void_qt_calls_keep_their_references_to_none():
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QColor, QPainterPath

    path = QPainterPath()
    before = sys.getrefcount(None)
    for i in range(2000):  # far below the count that would abort, far above any noise
        QColor(1, 2, 3).setAlpha(i % 255)
        path.lineTo(QPointF(i, i))
    lost = before - sys.getrefcount(None)
    assert lost < 50, f"the Qt binding lost {lost} references to None in 4000 void calls (see module text)"
