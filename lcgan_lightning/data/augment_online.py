"""`data.augment_online`: which per-sample augmentation the training slices get, and its transform.

false (none) | true (the paper's traditional augmentation, :class:`augment.OnlineAugmentation`, the
numbers it always gave) | nnunet (nnU-Net's 2-D training augmentation,
:class:`augment_nnunet.NnUNetAugmentation`). Both are seeded per sample by the training loader.
The transforms' libraries are imported only when one is built.
"""

from __future__ import annotations

from typing import Any

from lcgan_lightning.data.validation import DataConfigError

ONLINE_CHOICES = (False, True, "nnunet")


def check_online_choice(value: bool | str | None) -> bool | str:
    """The `data.augment_online` value as False, True or "nnunet" (DataConfigError naming the key otherwise)."""
    text = value.strip().lower() if isinstance(value, str) else None
    if value is None or value is False or text in ("false", "none"):
        return False
    if value is True or text == "true":
        return True
    if text == "nnunet":
        return "nnunet"
    raise DataConfigError(f"data.augment_online: {value!r} is not one of false, true, nnunet",
                          hint="true: the paper's traditional augmentation on the fly; nnunet: nnU-Net's "
                               "2-D augmentation (docs/data.md)")


def online_augmentation(choice: bool | str, image_size: int) -> Any:
    """The per-sample `SliceDataset` transform for a `check_online_choice` value; None for False."""
    if choice == "nnunet":
        from lcgan_lightning.data.augment_nnunet import NnUNetAugmentation

        return NnUNetAugmentation(image_size)
    if choice is True:
        from lcgan_lightning.data.augment import OnlineAugmentation

        return OnlineAugmentation(image_size)
    return None
