"""Crash-test hook: a process armed with ``arm(name)`` kills itself at ``fault_point(name)``.

Only tests arm it (``tests/status/crash_submit.py``, a process the crash tests SIGKILL
this way). Nothing reads it from the environment or the settings, so no configuration
of a deployed desk can make it crash on purpose.
"""

from __future__ import annotations

import os
import signal

_armed: str | None = None


def arm(name: str | None) -> None:
    """From now on, ``fault_point(name)`` kills this process (None disarms)."""
    global _armed
    _armed = name


def fault_point(name: str) -> None:
    """SIGKILL this process here if it was armed with ``name``: no clean-up runs, as in
    a power cut or an OOM kill."""
    if _armed is not None and _armed == name:
        os.kill(os.getpid(), signal.SIGKILL)
