"""The end of a pipeline run on the console: Table 1 with verdicts, the selected generators, wall times.

Read from `results.json` and `pipeline_state.json`; labels from the variant registry.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from lcgan_lightning.console.jobs import clock
from lcgan_lightning.constants import segmenter_name
from lcgan_lightning.generator_families import generator_noun
from lcgan_lightning.run_plan import subset_title
from lcgan_lightning.variants import row_label, variants_in


def run_summary(results: dict[str, Any] | None, state: dict[str, Any]) -> Group:
    """Table 1 rows with CIs and verdicts, the A/A calibration, the selected generator per subset, wall
    time per stage."""
    parts: list[Any] = []
    if results:
        parts += ["", _table1(results), *_verdict_notes(results), "", _selected(results)]
    parts += ["", _walls(state)]
    return Group(*parts)


def _table1(results: dict[str, Any]) -> Table:
    repeats = int(results.get("repeats", 1))
    level = results.get("statistics", {}).get("level", 0.95)
    table = Table(title=f"Table 1 — test DSC of {segmenter_name(results.get('seg_model'))}, mean of {repeats} repeat(s); "
                        f"Δ vs original [{level * 100:g} % CI over training runs and test patients]",
                  box=box.SIMPLE_HEAD, show_edge=False, title_justify="left", pad_edge=False, collapse_padding=True)
    for col, justify in (("subset", "left"), ("training data", "left"), ("DSC", "right"),
                         ("Δ DSC [CI]", "right"), ("verdict", "left"), ("Holm", "left"), ("80 % power", "right")):
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for fkey, block in results["fractions"].items():
        title = subset_title(fkey, block.get("patients"))
        for v in variants_in(block):
            vs = block[v.key].get("vs_original", {}).get("dsc") or {}
            lo, hi = vs.get("ci") or [None, None]
            change = ""
            if vs.get("diff") is not None:
                change = f"{vs['diff']:+.3f}" + (f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None and hi is not None else "")
            verdict, holm = vs.get("verdict", ""), vs.get("verdict_adjusted", "")
            detectable = f"±{vs['detectable']:.3f}" if vs.get("detectable") is not None else ""
            dsc = block[v.key].get("dsc")
            table.add_row(title, row_label(v, results), "—" if dsc is None else f"{dsc:.3f}", change, _word(verdict),
                          _word(holm if holm != verdict else ""), detectable)
            title = ""
    full = results.get("full", {}).get("dsc")
    if full is not None:
        table.add_row("100 %", "entire dataset (judge)", f"{full:.3f}", "", "", "", "")
    return table


def _word(verdict: str) -> Text:
    style = {"better": "green", "worse": "red"}.get(verdict.split(" ")[0] if verdict else "", "")
    return Text(verdict, style=style)


def _verdict_notes(results: dict[str, Any]) -> list[Any]:
    """One run per arm: no verdicts, plainly; the A/A calibration, with a warning when it fails."""
    notes: list[Any] = []
    if int(results.get("repeats", 1)) < 2:
        notes.append(Text("One training run per arm: no verdict is computed (seed noise cannot be estimated); "
                          "use repeats >= 3 for verdicts.", style="yellow"))
    cal = results.get("calibration") or {}
    if cal.get("enabled") and cal.get("rate") is None:
        notes.append(Text(f"A/A calibration: no comparison to count ({cal.get('identical', 0)} with arms that agree "
                          "exactly, e.g. neither predicts a lesion).", style="dim"))
    elif cal.get("enabled"):
        line = (f"A/A calibration: {cal['called_difference']} of {cal['comparisons']} comparisons of identical "
                f"configurations called a difference ({cal['rate'] * 100:.1f} %, nominal {cal['nominal'] * 100:g} %)")
        if cal.get("excess"):
            notes.append(Text(f"WARNING: {line}: more than chance allows (binomial p = {cal['p_value']:.3f}); "
                              "the verdicts are optimistic.", style="bold red"))
        else:
            notes.append(Text(line + ".", style="dim"))
    return notes


def _selected(results: dict[str, Any]) -> Table:
    table = Table(title=f"Selected {generator_noun(results)} per subset (first repeat)", box=box.SIMPLE_HEAD, show_edge=False,
                  title_justify="left", pad_edge=False)
    for col in ("subset", "epochs", "FCN score", "SSIM", "fooled"):
        table.add_column(col, justify="left" if col == "subset" else "right")
    for fkey, block in results["fractions"].items():
        sel = block.get("selected") or {}
        cells = [f"{sel[k]:.3f}" if isinstance(sel.get(k), float) else "—" for k in ("fcn_score", "ssim", "fooled")]
        table.add_row(subset_title(fkey, block.get("patients")), str(sel.get("epochs", "—")), *cells)
    return table


def _walls(state: dict[str, Any]) -> Table:
    stages = state.get("stages", {})
    last = state.get("last_invocation", {})
    table = Table(title="Wall time per stage (s; the run that did the work)", box=box.SIMPLE_HEAD, show_edge=False,
                  title_justify="left", pad_edge=False)
    for name in stages:
        table.add_column(name + (" (skipped)" if last.get(name) == "skipped" else ""), justify="right")
    table.add_column("total", justify="right")
    walls = [float(v.get("wall_s", 0.0)) for v in stages.values()]
    table.add_row(*[f"{w:.0f}" for w in walls], clock(sum(walls)))
    return table
