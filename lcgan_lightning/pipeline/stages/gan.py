"""GAN stage: per repeat, one generator of the family `gan.model` per training subset (constant LR: its
epoch checkpoints are the candidates)."""

from __future__ import annotations

from omegaconf import OmegaConf

from lcgan_lightning.console import Job
from lcgan_lightning.generator_families import family_overrides, gan_model, model_keys
from lcgan_lightning.layout import GAN_SUBDIR
from lcgan_lightning.pipeline.args import quoted
from lcgan_lightning.pipeline.context import PipelineContext
from lcgan_lightning.pipeline.stages.base import Stage, check_network


class GanStage(Stage):
    name = "gan"

    def check_finished(self, ctx: PipelineContext, jobs: list[Job]) -> None:
        family = gan_model(ctx.cfg.gan)
        check_network(jobs, family, key="gan.model", hint=(
            f"run gan.model={family} in a new run dir: a copy of this one without gan/, select/, synthetic*/, seg/, "
            "results*.json, report.md and figures/ keeps its data and judge (docs/pipeline.md), or keep the family "
            "trained here"))

    def jobs(self, ctx: PipelineContext) -> list[Job]:
        plan = ctx.plan
        return [Job(plan.label(s.fraction, seed, **({"epochs": e} if len(plan.gan_run_epochs(s)) > 1 else {})),
                    ctx.layout.gan_dir(s.fraction, seed, e))
                for s in plan.subsets for seed in plan.seeds for e in plan.gan_run_epochs(s)]

    def run(self, ctx: PipelineContext) -> None:
        cfg, plan = ctx.cfg, ctx.plan
        family = gan_model(cfg.gan)
        accepted = model_keys(family)  # e.g. model.lr_policy: the LcGAN's only
        constant = plan.gan_lr_policy == "constant"
        seeds = ",".join(str(x) for x in plan.seeds)
        # one multirun per group of subsets that share their candidate epochs (all of them with gan.epochs)
        groups: dict[tuple[int, ...], list[float]] = {}
        for s in plan.subsets:
            groups.setdefault(s.gan_epochs, []).append(s.fraction)
        for epochs, fracs in groups.items():
            args = [
                f"model={family}",
                f"data.fraction={','.join(repr(f) for f in fracs)}",
                f"data.batch_size={int(cfg.gan.batch_size)}",
                f"model.lr_policy={cfg.gan.lr_policy}",
                # constant LR: the shorter candidates are checkpoints of the longest run;
                # linear decay: every epoch count is its own job and keeps only its final epoch
                f"model.save_epochs=[{','.join(str(e) for e in epochs)}]"
                if constant
                else "model.save_epochs=[${trainer.max_epochs}]",
                f"trainer.max_epochs={max(epochs) if constant else ','.join(str(e) for e in epochs)}",
                f"seed={seeds}",
                "test=false",
                "task_name=gan",
                f"model.last_ckpt_every_n_epochs={int(cfg.gan.get('last_ckpt_every_n_epochs') or 1)}",
                f"data.val_samples={cfg.gan.get('val_samples') or 'null'}",
                f"trainer.check_val_every_n_epoch={int(cfg.gan.get('val_every_n_epochs') or 1)}",
            ]
            args = [a for a in args if not a.startswith("model.") or a.split("=")[0].split(".")[1] in accepted]
            args += [
                *ctx.args.launcher,
                f"hydra.sweep.dir={quoted(ctx.layout.gan_sweep_dir)}",
                f"hydra.sweep.subdir={quoted(GAN_SUBDIR)}",
                *ctx.args.training(OmegaConf.create({"overrides": family_overrides(cfg.gan, family)})),
            ]
            ctx.launch("train", args, multirun=True)
