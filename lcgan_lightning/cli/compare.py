"""`lcgan-compare`: is a group of segmentation runs better than another? Paired by position.

    lcgan-compare "variant=[D1,D2,D3]" "reference=[D4,D5,D6]" hydra.run.dir=OUT [level=0.95]

Each D is a segmentation run dir holding ``predictions.npz``; variant[r] is compared with reference[r]
(same test patients). Writes ``OUT/compare.json`` (:func:`lcgan_lightning.comparison.compare_run_dirs`)
and prints one row per metric. Method and how to read the verdicts: ``docs/verdicts.md``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lcgan_lightning.atomic_io import write_json_atomic
from lcgan_lightning.cli.errors import report_errors
from lcgan_lightning.comparison import PER_CLASS, ComparisonError, compare_run_dirs
from lcgan_lightning.config import register_resolvers
from lcgan_lightning.paths import CONF_DIR

register_resolvers()
OUTPUT = "compare.json"
STYLE = {"better": "green", "worse": "red", "not estimable": "yellow"}


def _dirs(cfg: DictConfig, key: str) -> list[str]:
    value = None if OmegaConf.is_missing(cfg, key) else cfg.get(key)
    if value is None:
        raise ComparisonError(f"{key}: missing; give a list of run dirs, e.g. {key}=[D1,D2,D3]")
    if isinstance(value, (ListConfig, list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def _num(x: Any, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def table(result: dict[str, Any]) -> Table:
    """One row per metric: difference, interval, p, verdict, Holm verdict, detectable effect."""
    level = result["level"]
    out = Table(title=f"variant − reference ({result['n_repeats']} paired runs, {result['n_patients']} test patients)")
    for name, justify in (("metric", "left"), ("Δ", "right"), (f"{level * 100:g} % CI", "right"), ("p", "right"),
                          ("verdict", "left"), ("Holm", "left"), ("detectable ±", "right")):
        out.add_column(name, justify=justify)  # type: ignore[arg-type]
    rows = [(m, r) for m, r in result["metrics"].items() if m != PER_CLASS]
    rows += [(f"dsc {c}", r) for c, r in result["metrics"][PER_CLASS].items()]
    for name, r in rows:
        lo, hi = r["ci"]
        ci = "—" if lo is None else f"[{lo:+.4f}, {hi:+.4f}]"
        word = r["verdict"] + (f" ({r['reason']})" if r.get("reason") else "")
        out.add_row(name, _num(r["diff"], "+.4f"), ci, _num(r["p_value"], ".3f"),
                    Text(word, style=STYLE.get(r["verdict"], "")),
                    Text(r["verdict_adjusted"], style=STYLE.get(r["verdict_adjusted"], "")),
                    _num(r["detectable"], ".4f"))
    return out


def run(variant: Sequence[str], reference: Sequence[str], out_dir: Path, level: float = 0.95,
        num_classes: int = 6, console: Console | None = None) -> dict[str, Any]:
    """Compare, write ``out_dir/compare.json``, print the table; returns the result."""
    result = compare_run_dirs(variant, reference, level, num_classes)
    path = write_json_atomic(out_dir / OUTPUT, result)
    console = console or Console(width=None if sys.stdout.isatty() else 150)  # a log file: no squeezed columns
    console.print(table(result))
    console.print(f"{path}  (method and reading: docs/verdicts.md)")
    return result


@hydra.main(config_path=str(CONF_DIR), config_name="compare", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    run(_dirs(cfg, "variant"), _dirs(cfg, "reference"), Path(cfg.paths.output_dir), float(cfg.level),
        int(cfg.num_classes))


if __name__ == "__main__":
    main()
