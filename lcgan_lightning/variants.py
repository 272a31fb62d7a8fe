"""The training-set variants of the segmenter: the one registry every stage, table and folder reads.

An *augment* is a value of `data.augment` (which training data a segmenter reads); a *variant* is
an augment with `k` synthetic images per mask (`data.synthetic_per_mask`), spelled "A" for k = 1
and "A-kK" otherwise (`gan-k2`, `gan_novel-k4`): the pipeline's `augments` list, the `aug=` folder
of a segmentation run and the results.json key all use that spelling, except that `none` is
reported as `original`.

Adding an augment = one `Augment(...)` line in `AUGMENTS` (and its data in
`lcgan_lightning.data.augment_sets`, which reads `Augment.extras`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lcgan_lightning.generator_families import generator_of


@dataclass(frozen=True)
class Augment:
    """One value of `data.augment`."""

    name: str  # the data.augment value
    key: str  # its results.json / report key
    label: str  # its row title in Tables 1-3
    extras: tuple[str, ...]  # sets added to the training slices: "gan" (redraws of the training
    #                          masks, data.synthetic_dir), "gan_novel" (new masks, data.novel_dir),
    #                          "traditional" (one transformed copy of every training slice)
    originals: bool = True  # trains on the original slices (False: the synthetic set alone)
    in_paper: bool = False  # a row of the paper's Tables 1-2 (shown even when the run lacks it)

    @property
    def reads_synthetic(self) -> bool:
        """Reads the synthetic set of the training masks (synthetic_only reads it alone)."""
        return "gan" in self.extras or not self.originals

    @property
    def reads_novel(self) -> bool:
        """Reads the synthetic set of new masks (mask bank)."""
        return "gan_novel" in self.extras


AUGMENTS: dict[str, Augment] = {a.name: a for a in (
    Augment("none", "original", "Selected (original)", (), in_paper=True),
    Augment("gan", "gan", "+ GAN generated", ("gan",), in_paper=True),
    Augment("traditional", "traditional", "+ traditional aug.", ("traditional",), in_paper=True),
    Augment("both", "both", "+ both", ("gan", "traditional"), in_paper=True),
    # train on synthetic, test on real (TSTR): the synthetic pairs of the training masks alone
    Augment("synthetic_only", "synthetic_only", "Synthetic only (TSTR)", ("gan",), originals=False),
    Augment("gan_novel", "gan_novel", "+ GAN, new masks", ("gan_novel",)),
    Augment("both_novel", "both_novel", "+ both, new masks", ("gan_novel", "traditional")),
)}
AUGMENT_CHOICES: tuple[str, ...] = tuple(AUGMENTS)
ORIGINAL = "none"
_SPELLING = re.compile(r"(.+)-k(\d+)")


class UnknownVariantError(ValueError):
    """A variant name that is not an augment (optionally with -kK, K >= 2)."""


@dataclass(frozen=True)
class Variant:
    """An augment with `per_mask` synthetic images per mask (k)."""

    augment: Augment
    per_mask: int = 1

    @property
    def name(self) -> str:
        """Pipeline spelling and `aug=` folder name: "gan", "gan_novel-k4"."""
        return self.augment.name if self.per_mask == 1 else f"{self.augment.name}-k{self.per_mask}"

    @property
    def key(self) -> str:
        """results.json key: "original", "gan", "gan_novel-k4"."""
        return self.augment.key if self.per_mask == 1 else f"{self.augment.key}-k{self.per_mask}"

    @property
    def label(self) -> str:
        return self.label_for(None)

    def label_for(self, generator: str | None) -> str:
        """Row title naming the generator of its synthetic images ("+ GAN generated (SPADE, k=2)");
        `generator` None (the paper's LcGAN) or a variant without synthetic images: the plain label."""
        notes = [generator] if generator and (self.augment.reads_synthetic or self.augment.reads_novel) else []
        notes += [f"k={self.per_mask}"] if self.per_mask > 1 else []
        return f"{self.augment.label} ({', '.join(notes)})" if notes else self.augment.label

    @property
    def is_original(self) -> bool:
        return self.augment.name == ORIGINAL

    @property
    def compared_with_gan(self) -> bool:
        """Also compared with "+ GAN" (one redraw per training mask): new masks, or k > 1."""
        return self.augment.reads_novel or self.per_mask > 1

    def sort_key(self) -> tuple[int, int]:
        """Registry order, then k."""
        return list(AUGMENTS).index(self.augment.name), self.per_mask


def variant(name: str) -> Variant:
    """The variant a pipeline augment name spells: "gan_novel-k4" -> (gan_novel, k = 4)."""
    text = str(name)
    base, k = text, 1
    if m := _SPELLING.fullmatch(text):
        base, k = m.group(1), int(m.group(2))
    with_k = [a.name for a in AUGMENTS.values() if a.reads_synthetic or a.reads_novel]
    if base not in AUGMENTS or k < 1 or (k > 1 and base not in with_k):
        raise UnknownVariantError(f"{text!r} is not a variant: use one of {list(AUGMENTS)}, or A-kK "
                                  f"(K synthetic images per mask) for A in {with_k}")
    return Variant(AUGMENTS[base], k)


def row_label(v: Variant, results: Mapping[str, Any]) -> str:
    """The row title of `v` in the report's and console's tables of a results.json (names a non-LcGAN
    generator: `gan_model`, `gan_sample_steps`)."""
    return v.label_for(generator_of(results))


def variant_by_key(key: str) -> Variant:
    """The variant of a results.json key ("original" -> none)."""
    names = {a.key: a.name for a in AUGMENTS.values()}
    base, _, k = key.partition("-k")
    return variant(names.get(base, base) + (f"-k{k}" if k else ""))


def variants_in(keys: Iterable[str]) -> list[Variant]:
    """The variants among results.json keys (other keys ignored), in registry order, then k."""
    found = []
    for key in keys:
        try:
            found.append(variant_by_key(key))
        except UnknownVariantError:
            continue
    return sorted(found, key=Variant.sort_key)
