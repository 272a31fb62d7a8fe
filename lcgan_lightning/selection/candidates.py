"""Candidate generators: explicit lists (what the pipeline hands over) or discovery in a sweep folder.

A candidate is one (fraction, epochs) pair with its generator checkpoint. The pipeline knows its
candidates (`RunLayout.candidate_ckpt`) and passes them explicitly; discovery from a folder is for
users who point `lcgan-select` at a sweep by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lcgan_lightning.checkpoint_io import load_checkpoint
from lcgan_lightning.layout import epochs_in_path, fraction_in_path, fraction_key


@dataclass(frozen=True)
class Candidate:
    """One generator to score: its data fraction, training epochs and checkpoint."""

    fraction: float
    epochs: int
    checkpoint: str

    @property
    def name(self) -> str:
        """Display name, e.g. 'frac=0.1/epochs=50'."""
        return f"frac={fraction_key(self.fraction)}/epochs={self.epochs}"


# this project's LcGAN writes "epoch=050.ckpt" after 50 epochs (1-based); "epochs=50" likewise;
# Lightning's default "epoch=49-step=N.ckpt" holds the 0-based epoch index
_PAPER_FILE_RE = re.compile(r"^epochs?=(\d+)$")
_LIGHTNING_FILE_RE = re.compile(r"^epoch=(\d+)-step=\d+")


def _is_per_epoch(path: Path) -> bool:
    return bool(_PAPER_FILE_RE.match(path.stem) or _LIGHTNING_FILE_RE.match(path.stem))


def _load_ckpt_meta(path: Path, trust: bool = False) -> dict[str, Any]:
    # UnsafeCheckpointError is not a ValueError: a refused file stops discovery, it is not skipped
    ckpt = load_checkpoint(path, map_location="cpu", trust=trust)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a Lightning checkpoint (holds a {type(ckpt).__name__})")
    meta = {k: ckpt.get(k) for k in ("epoch", "global_step", "hyper_parameters", "run_config", "datamodule_hyper_parameters")}
    meta["is_generator"] = any(str(k).startswith(("generator.", "netG.", "G.")) for k in ckpt.get("state_dict", {}))
    return meta


def _dig(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


def fraction_of(path: Path, meta: Mapping[str, Any] | None = None, trust: bool = False) -> float:
    """A generator checkpoint's data fraction: from its stored config, else a 'frac=F' path part."""
    meta = meta if meta is not None else _load_ckpt_meta(path, trust)
    for value in (
        _dig(meta, "run_config", "data", "fraction"),
        _dig(meta, "datamodule_hyper_parameters", "fraction"),
        _dig(meta, "hyper_parameters", "fraction"),
        _dig(meta, "hyper_parameters", "data", "fraction"),
    ):
        if value is not None:
            return float(value)
    if (frac := fraction_in_path(path)) is not None:
        return frac
    raise ValueError(f"{path}: cannot tell the data fraction (no data.fraction in the checkpoint, no frac=F in the path)")


def epochs_of(path: Path, meta: Mapping[str, Any] | None = None, trust: bool = False) -> int:
    """Epochs a checkpoint was trained for.

    ``epoch=EEE.ckpt`` / ``epochs=EEE.ckpt`` (the LcGAN's own save_epochs files): EEE;
    ``epoch=I-step=S.ckpt`` (Lightning's default name, 0-based index): I + 1; otherwise (e.g.
    last.ckpt) the checkpoint's own epoch counter, else an ``epochs=E`` folder in its path.
    """
    if m := _PAPER_FILE_RE.match(path.stem):
        return int(m.group(1))
    if m := _LIGHTNING_FILE_RE.match(path.stem):
        return int(m.group(1)) + 1
    meta = meta if meta is not None else _load_ckpt_meta(path, trust)
    if meta.get("epoch") is not None:
        # saved at the end of a training epoch: Lightning's counter is still that epoch's 0-based index
        return int(meta["epoch"]) + 1
    if (e := _run_epochs(path, meta)) is not None:
        return e
    raise ValueError(f"{path}: cannot tell how many epochs this checkpoint was trained for")


def _run_epochs(path: Path, meta: Mapping[str, Any]) -> int | None:
    """Epochs the whole run was configured for (trainer.max_epochs, else an epochs=E folder)."""
    value = _dig(meta, "run_config", "trainer", "max_epochs")
    if value is not None:
        return int(value)
    return epochs_in_path(path)


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def discover_candidates(
    root: str | Path, trust: bool = False
) -> tuple[list[Candidate], list[dict[str, str]]]:
    """Every generator checkpoint under `root` as a candidate; returns (candidates, skipped).

    Layout (`lcgan_lightning.layout`): ``gan/frac=F/epochs=E/checkpoints/*.ckpt``; any other
    ``**/checkpoints/*.ckpt`` is found too. The fraction comes from the config stored in the
    checkpoint (``run_config.data.fraction``), else a ``frac=F`` folder. Per run dir:

    * per-epoch files (``epoch=EEE.ckpt``) are one candidate each (a constant-LR run saving
      after 10, 50, 100, 200 epochs gives four candidates); ``last.ckpt`` is used only when the
      run dir has no per-epoch file;
    * with a decaying LR (``lr_policy`` other than constant) only the checkpoint at the run's
      full length counts: an intermediate one is not what an E-epoch run produces;
    * checkpoints that are not generators (no ``generator.*`` weights, e.g. the judge) and
      duplicates of an already found (fraction, epochs) are listed in `skipped` with the reason.

    Checkpoints are read by `load_checkpoint`: a file holding pickled code stops the discovery
    (UnsafeCheckpointError) unless `trust`.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"candidates_dir {root} does not exist")
    candidates: dict[tuple[float, int], Candidate] = {}
    skipped: list[dict[str, str]] = []
    for ckpt_dir in sorted({p.parent for p in root.rglob("checkpoints/*.ckpt")}, key=_natural_key):
        files = sorted(ckpt_dir.glob("*.ckpt"), key=_natural_key)
        per_epoch = [f for f in files if _is_per_epoch(f)]
        chosen = per_epoch or [f for f in files if f.name == "last.ckpt"] or files
        for f in files:
            if f not in chosen:
                skipped.append({"file": str(f), "reason": "superseded by the run's per-epoch checkpoints"})
        for f in chosen:
            try:
                meta = _load_ckpt_meta(f, trust)
                if not meta["is_generator"]:
                    skipped.append({"file": str(f), "reason": "not a generator checkpoint (no generator.* weights)"})
                    continue
                cand = Candidate(fraction_of(f, meta), epochs_of(f, meta), str(f))
            except ValueError as err:
                skipped.append({"file": str(f), "reason": str(err)})
                continue
            policy = _dig(meta, "hyper_parameters", "lr_policy") or "constant"
            run_epochs = _run_epochs(f, meta)
            if policy != "constant" and run_epochs is not None and cand.epochs != run_epochs:
                skipped.append({"file": str(f), "reason": f"intermediate checkpoint ({cand.epochs} of {run_epochs} "
                                f"epochs) of a run with lr_policy={policy}"})
                continue
            key = (cand.fraction, cand.epochs)
            if key in candidates:
                skipped.append({"file": str(f), "reason": f"duplicate of {candidates[key].checkpoint} ({cand.name})"})
                continue
            candidates[key] = cand
    if not candidates:
        raise FileNotFoundError(f"no generator checkpoint found under {root} (skipped: {skipped})")
    return sorted(candidates.values(), key=lambda c: (c.fraction, c.epochs)), skipped


def parse_candidates(items: Iterable[Any], trust: bool = False) -> list[Candidate]:
    """Explicit candidates: checkpoint paths or mappings {checkpoint, fraction?, epochs?}.

    A stated fraction must agree with the one the checkpoint was trained on (its stored config, else
    a `frac=F` folder): a list that mixes fractions stops with every disagreeing file named.
    `trust` as in `discover_candidates`.
    """
    out, wrong = [], []
    for item in items:
        if isinstance(item, (str, Path)):
            item = {"checkpoint": str(item)}
        path = Path(item["checkpoint"])
        if not path.is_file():
            raise FileNotFoundError(f"candidate checkpoint {path} does not exist")
        meta = _load_ckpt_meta(path, trust)
        trained_on = fraction_of(path, meta)
        frac = float(item["fraction"]) if item.get("fraction") is not None else trained_on
        if fraction_key(frac) != fraction_key(trained_on):
            wrong.append(f"{path} (listed as fraction {frac}, trained on {trained_on})")
        epochs = int(item["epochs"]) if item.get("epochs") is not None else epochs_of(path, meta)
        out.append(Candidate(frac, epochs, str(path)))
    if wrong:
        raise ValueError("candidate list mixes fractions: " + "; ".join(wrong))
    return out
