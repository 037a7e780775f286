"""Where an installed package keeps its share files (config, launch, message definitions), without rclpy."""
from __future__ import annotations

import os
import sys
from pathlib import Path


def share_folders(package: str) -> list[Path]:
    """Candidate ``share/<package>`` folders, in search order: the ament index's (when ament_index_python is
    importable and indexes the package), ``<prefix>/share/<package>`` of every prefix on AMENT_PREFIX_PATH (a colcon
    install/ prefix, overlays first), then of ``sys.prefix`` (a pip install). They need not exist."""
    folders = []
    try:
        from ament_index_python.packages import get_package_share_directory

        folders.append(Path(get_package_share_directory(package)))
    except (ImportError, LookupError, OSError):  # not installed, not indexed, or AMENT_PREFIX_PATH unset
        pass
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return list(dict.fromkeys(folders + [Path(prefix) / "share" / package for prefix in (*prefixes, sys.prefix)]))
