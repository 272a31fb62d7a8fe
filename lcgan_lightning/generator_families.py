"""The generator family of a pipeline run (`gan.model`): its name in tables, and the overrides that reach it.

Families are the generator configs `conf/model/<family>.yaml` (docs/generators.md). The GAN jobs of a
family get `gan.family_overrides.<family>`, then `gan.overrides` (every family's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PAPER_FAMILY = "lcgan"
FAMILIES: dict[str, str] = {"lcgan": "LcGAN", "spade": "SPADE", "diffusion": "diffusion"}  # gan.model -> name


def gan_model(gan: Mapping[str, Any] | None) -> str:
    """The family a pipeline config's `gan:` block asks for (`gan.model`; lcgan when absent, as in older runs)."""
    return str((gan or {}).get("model") or PAPER_FAMILY)


def family_overrides(gan: Mapping[str, Any] | None, family: str) -> list[str]:
    """Every extra lcgan-train override of `family`'s GAN jobs: `gan.family_overrides.<family>`, then
    `gan.overrides` (the last wins: a command line's `gan.overrides` beats a preset's family list)."""
    gan = gan or {}
    own = (gan.get("family_overrides") or {}).get(family) or []
    return [str(o) for o in [*own, *(gan.get("overrides") or [])]]


def model_keys(family: str) -> set[str]:
    """The keys `conf/model/<family>.yaml` defines (what `model.<key>=` may set without a `+`)."""
    from omegaconf import OmegaConf

    from lcgan_lightning.paths import CONF_DIR

    return {str(k) for k in OmegaConf.load(CONF_DIR / "model" / f"{family}.yaml")}


def foreign_model_keys(family: str, overrides: Iterable[str]) -> list[str]:
    """The `model.<key>=...` overrides whose key `family`'s config lacks (`+`/`++` additions are not checked)."""
    keys = model_keys(family)
    found = []
    for o in overrides:
        name = o.split("=", 1)[0]
        if name.startswith("model.") and name.split(".")[1] not in keys:
            found.append(o)
    return found


def _last_model_value(gan: Mapping[str, Any] | None, key: str) -> str | None:
    """A diffusion run's `model.<key>` (its last override, else conf/model/diffusion.yaml's); None for the GANs."""
    family = gan_model(gan)
    if family != "diffusion":
        return None
    values = [o.split("=", 1)[1] for o in family_overrides(gan, family)
              if o.lstrip("+").split("=", 1)[0] == f"model.{key}"]
    if values:
        return values[-1]
    from omegaconf import OmegaConf

    from lcgan_lightning.paths import CONF_DIR

    return str(OmegaConf.select(OmegaConf.load(CONF_DIR / "model" / "diffusion.yaml"), key))


def sample_steps(gan: Mapping[str, Any] | None) -> int | None:
    """Sampling steps of a diffusion run's images (`model.sample_steps`); None for the GANs."""
    steps = _last_model_value(gan, "sample_steps")
    return None if steps is None else int(steps)


def diffusion_sampler(gan: Mapping[str, Any] | None) -> str | None:
    """"ddim" or "rflow": how a diffusion run samples (follows `model.scheduler`); None for the GANs."""
    scheduler = _last_model_value(gan, "scheduler")
    return None if scheduler is None else ("rflow" if scheduler == "rflow" else "ddim")


SAMPLER_NAMES = {"ddim": "DDIM", "rflow": "RFlow"}


def generator_label(model: str | None, steps: int | None = None, sampler: str | None = None) -> str | None:
    """What rows and headings add for the generator: None for the paper's LcGAN (labels unchanged),
    "SPADE", "diffusion, DDIM 20", "diffusion, RFlow 20"."""
    if model in (None, PAPER_FAMILY):
        return None
    name = FAMILIES.get(str(model), str(model))
    if model == "diffusion" and steps:
        return f"{name}, {SAMPLER_NAMES.get(sampler or 'ddim', sampler)} {steps}"
    return name


def generator_of(results: Mapping[str, Any]) -> str | None:
    """`generator_label` of a results.json (`gan_model`, `gan_sample_steps`, `gan_sampler`)."""
    return generator_label(results.get("gan_model"), results.get("gan_sample_steps"), results.get("gan_sampler"))


def generator_note(results: Mapping[str, Any]) -> str:
    """A heading's suffix naming the generator (" — generator: SPADE"); empty for the LcGAN."""
    label = generator_of(results)
    return f" — generator: {label}" if label else ""


def generator_noun(results: Mapping[str, Any]) -> str:
    """"generator" for the LcGAN, else the family's: "SPADE generator" (short titles, e.g. the console's)."""
    family = results.get("gan_model")
    return "generator" if family in (None, PAPER_FAMILY) else f"{FAMILIES.get(family, family)} generator"
