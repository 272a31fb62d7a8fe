"""A launcher that records the apps the pipeline stages start, and small plans for stage tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lcgan_lightning.run_plan import RunPlan, Subset

# the smallest real pipeline data: the smoke preset on a 12-patient phantom at 32² (tests/test_pipeline_*e2e.py)
TINY_DATA = [
    "scale=smoke",
    "data.image_size=32",
    "data.phantom.image_size=32",
    "data.phantom.num_patients=12",
    "data.phantom.num_slices=8",
]


@dataclass
class RecordingLauncher:
    """Records `(app, args, multirun)` for every launch instead of starting a process; `on_launch`
    may write the files the job would have written."""

    on_launch: Callable[[str, list[str], bool], None] | None = None
    calls: list[tuple[str, list[str], bool]] = field(default_factory=list)
    stage: str | None = None

    def launch(self, app: str, args: Sequence[str], multirun: bool = False) -> None:
        self.calls.append((app, list(args), multirun))
        if self.on_launch is not None:
            self.on_launch(app, list(args), multirun)

    def apps(self) -> list[str]:
        return [app for app, _, _ in self.calls]


def plan(fractions=(0.1,), seed=0, repeats=1, variants=("none", "gan"), gan_epochs=(1,), patients=4, slices=20,
         **more) -> RunPlan:
    """A plan without reading data: every subset holds `patients` patients and `slices` slices."""
    return RunPlan(seed=seed, repeats=repeats, split_per_repeat=more.pop("split_per_repeat", False),
                by_count=more.pop("by_count", False),
                subsets=tuple(Subset(f, patients, slices, tuple(gan_epochs)) for f in fractions),
                variants=tuple(variants), gan_lr_policy=more.pop("gan_lr_policy", "constant"),
                budget=more.pop("budget", "steps"), calibrate=more.pop("calibrate", False), **more)
