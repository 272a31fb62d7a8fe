"""The stages of the experiment (paper Fig. 4), in the order they run.

Adding a stage = a new module here with a `Stage` subclass, plus one line in `STAGES` (and its name
in the pipeline config's `stages` list).
"""

from lcgan_lightning.pipeline.stages.audit import AuditStage
from lcgan_lightning.pipeline.stages.base import Stage
from lcgan_lightning.pipeline.stages.calibrate import CalibrateStage
from lcgan_lightning.pipeline.stages.data import DataStage
from lcgan_lightning.pipeline.stages.gan import GanStage
from lcgan_lightning.pipeline.stages.judge import JudgeStage
from lcgan_lightning.pipeline.stages.report import ReportStage
from lcgan_lightning.pipeline.stages.seg import SegStage
from lcgan_lightning.pipeline.stages.select import SelectStage
from lcgan_lightning.pipeline.stages.synthesize import SynthesizeStage

STAGES: list[Stage] = [
    DataStage(),
    JudgeStage(),
    GanStage(),
    SelectStage(),
    SynthesizeStage(),
    AuditStage(),
    SegStage(),
    CalibrateStage(),
    ReportStage(),
]

__all__ = ["STAGES", "Stage"]
