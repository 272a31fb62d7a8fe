"""Opening checkpoint files without running code pickled inside them.

Every checkpoint this project opens (LcGAN generators, segmenters, the judge, the ImageNet VGG-16
state dict, Lightning resumes) goes through `load_checkpoint`. It reads with
``torch.load(weights_only=True)``: only tensors and plain Python data (dict, list, tuple, str,
numbers, bool, None) are rebuilt, and no module named inside the file is imported. A file that needs
more than that holds pickled objects whose unpickling can run arbitrary code; it is refused with
`UnsafeCheckpointError` unless the caller says the file is trusted (``trust=True``, the
``trust_checkpoint=true`` setting of the command-line apps), which loads it fully and warns.
"""

from __future__ import annotations

import logging
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from lcgan_lightning.errors import CheckpointNotFoundError, CheckpointReadError, UserError

log = logging.getLogger(__name__)

TRUST_SETTING = "trust_checkpoint=true"

_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")


class UnsafeCheckpointError(UserError, pickle.UnpicklingError):
    """A checkpoint holding pickled objects beyond tensors and plain Python data (refused)."""

    def __init__(self, path: str | Path, refused: list[str], hint: str | None = None) -> None:
        self.path = Path(path)
        self.refused = list(refused)
        what = (
            ", ".join(self.refused) if self.refused else "objects the safe unpickler does not allow"
        )
        hint = hint or (
            f"If you trust this file and where it came from, set {TRUST_SETTING} "
            "(Python: trust=True) to load it with full unpickling."
        )
        self.hint = hint
        super().__init__(
            f"{self.path}: refused to load: the file holds pickled Python code ({what}); "
            "unpickling it could run that code, and only tensors and plain Python data are loaded "
            "by default. "
            + hint
        )


class UnsafeCheckpointWarning(UserWarning):
    """A checkpoint was loaded with full unpickling because the caller trusted it."""


def refused_globals(path: str | Path, err: BaseException | None = None) -> list[str]:
    """Names of the pickled globals that a weights-only load refuses in `path` (nothing is run)."""
    names: list[str] = []
    try:
        names = list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - legacy (non-zip) format: fall back to torch's message
        pass
    if not names and err is not None:
        names = _REFUSED_GLOBAL.findall(str(err))
    return sorted(set(names))


def load_checkpoint(path: str | Path, map_location: Any = "cpu", trust: bool = False) -> Any:
    """Read a torch checkpoint file with ``weights_only=True``.

    A file holding other pickled objects raises `UnsafeCheckpointError` (naming the file and what
    was refused) unless ``trust=True``: then it is loaded with ``weights_only=False`` and a warning
    is logged and issued. A missing file raises FileNotFoundError; an unreadable one ValueError.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = refused_globals(path, err)
        if not refused:
            raise CheckpointReadError(f"{path}: not a readable checkpoint ({_reason(err)})") from err
        if not trust:
            raise UnsafeCheckpointError(path, refused) from None
    except Exception as err:  # noqa: BLE001 - corrupt zip, truncated file, not a torch file
        raise CheckpointReadError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {_reason(err)})"
        ) from err
    warn_trusted(path, refused, stacklevel=3)
    return torch.load(path, map_location=map_location, weights_only=False)


def warn_trusted(path: str | Path, refused: list[str], stacklevel: int = 2) -> None:
    """Log and warn that `path` is about to be unpickled fully because the user trusts it."""
    message = (
        f"{path}: loading a checkpoint with full unpickling because it is trusted "
        f"({TRUST_SETTING}); it holds pickled objects ({', '.join(refused)}) whose code runs now"
    )
    log.warning(message)
    warnings.warn(message, UnsafeCheckpointWarning, stacklevel=stacklevel)


def _reason(err: BaseException) -> str:
    """The informative line of a torch.load error (torch wraps it in a long advice text)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__


__all__ = [
    "TRUST_SETTING",
    "UnsafeCheckpointError",
    "UnsafeCheckpointWarning",
    "load_checkpoint",
    "refused_globals",
    "warn_trusted",
]
