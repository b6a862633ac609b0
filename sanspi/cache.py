"""sanspi's cache folder: ``$SANSPI_CACHE``, by default ``~/.cache/sanspi``.

One variable, one meaning: the folder everything sanspi keeps between runs
lives under. ``lab/`` holds the lab's guest kernel, packages and scripts
(lab/provision.py); ``hypothesis/`` the campaigns' example database, one
folder per provider and model configuration (conform/exampledb.py).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(env: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    """``$SANSPI_CACHE`` or ``~/.cache/sanspi``, absolute."""
    if env.get("SANSPI_CACHE"):
        return Path(env["SANSPI_CACHE"]).expanduser().absolute()
    return Path.home() / ".cache" / "sanspi"
