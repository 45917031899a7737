"""Crash-test hook: a process armed with ``arm(name)`` kills itself at ``fault_point(name)``.

Only tests arm it (``tests/status/crash_submit.py``, a process the crash tests SIGKILL
this way). Nothing reads it from the environment or the settings, so no configuration
of a deployed desk can make it crash on purpose.
"""

from __future__ import annotations

import os
import signal

_armed: str | None = None
_left = 1


def arm(name: str | None, *, after: int = 1) -> None:
    """From now on, the ``after``-th ``fault_point(name)`` kills this process (None
    disarms): ``after=40`` lets a bulk run send 39 rows first."""
    global _armed, _left
    _armed = name
    _left = max(1, after)


def fault_point(name: str) -> None:
    """SIGKILL this process here if it was armed with ``name``: no clean-up runs, as in
    a power cut or an OOM kill."""
    global _left
    if _armed is not None and _armed == name:
        _left -= 1
        if _left <= 0:
            os.kill(os.getpid(), signal.SIGKILL)
