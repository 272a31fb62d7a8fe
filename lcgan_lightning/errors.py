"""Errors a user can fix: their message is "<file>: <defect>" and `hint` says what to do.

The command-line apps print a `UserError` as two lines (`error: …`, `hint: …`) and exit 1 instead of
a traceback (:mod:`lcgan_lightning.cli.errors`); ``HYDRA_FULL_ERROR=1`` shows the traceback again.
Each class also derives from the built-in type callers already catch (ValueError, FileNotFoundError).
"""

from __future__ import annotations


class UserError(Exception):
    """Base of the errors above; `hint` (class default or per instance) is one line of advice."""

    hint = "fix the file or setting named above and run the command again"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class ConfigError(UserError, ValueError):
    """A config value the code refuses; the message starts with the key (e.g. `model.norm: …`)."""

    hint = "the docs/ pages list valid values; `--cfg job` prints the composed config"


class CheckpointNotFoundError(UserError, FileNotFoundError):
    """A checkpoint path that points at no file."""

    hint = "check the path (a run keeps its checkpoints in <run dir>/checkpoints/)"


class CheckpointReadError(UserError, ValueError):
    """A checkpoint file that exists but is not one (corrupt, truncated, another kind of file)."""

    hint = "the file is damaged or of another kind: point at a checkpoint this project wrote"


class WeightsNotFoundError(UserError, FileNotFoundError):
    """A pretrained-weights file (e.g. torchvision's VGG-16 state dict) that is not there."""

    hint = ("download torchvision's vgg16-397923af.pth and give its local path, "
            "or set pretrained_vgg16=null to train from scratch")
