"""Atomic file writes: a temp file beside the target, then a rename, so a reader never sees half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` (creating its folder) through a temp file and `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_json_atomic(path: str | Path, content: Any) -> Path:
    """`content` as indented JSON, written atomically."""
    return write_text_atomic(path, json.dumps(content, indent=2) + "\n")
