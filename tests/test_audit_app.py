"""`lcgan-audit` on a tiny set (32², real untrained LcGAN and judge): audit.json, figures, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lcgan_lightning.constants import LESION_CLASSES
from lcgan_lightning.data.synthetic_set import SyntheticSetError

SIZE = 32


def _compose(name: str, root: Path, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from lcgan_lightning.paths import CONF_DIR

    base = [f"paths.root_dir={root}", f"paths.output_dir={root / name}", f"data.image_size={SIZE}",
            "data.phantom.num_patients=12", "data.phantom.num_slices=8", "seed=3"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(name, overrides=base + overrides)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A phantom, its split, a judge and generator checkpoint, and the synthetic set of fraction 0.25."""
    import pytorch_lightning as pl

    from lcgan_lightning.cli.synthesize import synthesize_from_config
    from lcgan_lightning.models.lcgan import LcGAN
    from lcgan_lightning.models.segmenter import Segmenter

    root = tmp_path_factory.mktemp("audit")
    torch.manual_seed(0)
    gan = LcGAN(image_size=SIZE, ngf=8, ndf=8, seed=0)
    gen_ckpt = root / "gen.ckpt"
    torch.save({"state_dict": gan.state_dict(), "hyper_parameters": dict(gan.hparams)}, gen_ckpt)
    judge = Segmenter(arch="basicunet", width=0.125)
    judge_ckpt = root / "judge.ckpt"
    torch.save({"state_dict": judge.state_dict(), "hyper_parameters": dict(judge.hparams),
                "pytorch-lightning_version": pl.__version__}, judge_ckpt)
    splits = root / "splits.json"
    synthesize_from_config(_compose("synthesize", root, [
        f"checkpoint={gen_ckpt}", "data.fraction=0.25", f"splits_path={splits}", f"out_dir={root / 'syn'}",
        "previews=0"]))
    return {"root": root, "set": root / "syn", "judge": judge_ckpt, "gen": gen_ckpt, "splits": splits}


def _audit_cfg(made, set_dir: Path, *more: str):
    return _compose("audit", made["root"], [
        f"synthetic_dir={set_dir}", f"judge_ckpt={made['judge']}", f"splits_path={made['splits']}",
        "logger.wandb.mode=disabled", "audit.diversity_masks=4", "audit.diversity_k=3", *more])


def _copy(made, name: str) -> Path:
    dst = made["root"] / name
    shutil.rmtree(dst, ignore_errors=True)
    return Path(shutil.copytree(made["set"], dst))


def test_audit_app_writes_audit_json_beside_the_set(made):
    from lcgan_lightning.audit import audit_is_current, audit_summary
    from lcgan_lightning.cli.audit import audit_from_config, log_to_wandb
    from lcgan_lightning.data.datamodule import open_datamodule

    set_dir = _copy(made, "syn_ok")
    cfg = _audit_cfg(made, set_dir)
    audit = audit_from_config(cfg)
    on_disk = json.loads((set_dir / "audit.json").read_text())
    assert on_disk == json.loads(json.dumps(audit))
    train = open_datamodule(cfg.data, augment="none", fraction=0.25, splits_path=str(made["splits"])).train_slices
    manifest = json.loads((set_dir / "manifest.json").read_text())
    assert audit["n_synthetic"] == audit["n_real"] == len(train) == manifest["n"]
    assert audit["n_patients"] == len(set(train.patients.tolist())) == 2
    assert audit["set"]["fraction"] == 0.25 and audit["set"]["seed"] == 3
    assert audit["set"]["generator_ckpt"] == str(made["gen"].resolve())
    assert audit["judge_ckpt"] == str(made["judge"].resolve())
    s = audit_summary(audit)
    for key in ("copy_rate_feature", "copy_rate_pixel", "precision", "recall"):
        assert 0.0 <= s[key] <= 1.0
    assert s["fid"] >= 0 and s["mifid"] >= 0
    assert set(s["mask_fidelity"]) == set(LESION_CLASSES)
    assert -1.0 <= s["diversity_ssim"] <= 1.0 and audit["diversity"]["n_masks"] == 4 and audit["diversity"]["k"] == 3
    pairs = audit["memorisation"]["feature"]["closest_pairs"]
    assert len(pairs) == 8 and [p["distance"] for p in pairs] == sorted(p["distance"] for p in pairs)
    assert all(p["real_slice"].startswith(p["patient"] + "/") for p in pairs)
    for rel in audit["figures"].values():
        assert (set_dir / rel).stat().st_size > 1000
    assert audit_is_current(set_dir, made["judge"]) and not audit_is_current(set_dir, made["root"] / "other.ckpt")
    log_to_wandb(cfg, audit)  # W&B disabled: the code path runs, nothing is written or sent
    # a regenerated set (new manifest) makes the audit stale
    manifest["created"] = "later"
    (set_dir / "manifest.json").write_text(json.dumps(manifest))
    assert not audit_is_current(set_dir, made["judge"])


def test_a_set_with_two_images_per_mask_is_audited_whole(made):
    """k = 2: both copies are audited. Copy 1 is made of the real training slices themselves, so a
    first-copy-only audit would miss them; here they are half the set and the closest pairs."""
    from lcgan_lightning.audit import audit_is_current
    from lcgan_lightning.cli.audit import audit_from_config
    from lcgan_lightning.cli.synthesize import synthesize_from_config
    from lcgan_lightning.data.datamodule import open_datamodule

    set_dir = made["root"] / "syn_k2"
    synthesize_from_config(_compose("synthesize", made["root"], [
        f"checkpoint={made['gen']}", "data.fraction=0.25", f"splits_path={made['splits']}", f"out_dir={set_dir}",
        "previews=0", "data.synthetic_per_mask=2"]))
    cfg = _audit_cfg(made, set_dir)
    train = open_datamodule(cfg.data, augment="none", fraction=0.25, splits_path=str(made["splits"])).train_slices
    n = len(train)
    images = np.load(set_dir / "images.npy")
    assert images.shape[0] == 2 * n
    images[n:] = np.asarray(train.images, dtype=np.float16).reshape(images[n:].shape)  # copy 1 = the real slices
    np.save(set_dir / "images.npy", images)

    audit = audit_from_config(cfg)
    assert (audit["n_synthetic"], audit["n_real"], audit["set"]["images_per_mask"]) == (2 * n, n, 2)
    pixel = audit["memorisation"]["pixel"]
    assert pixel["copy_rate"] >= 0.5
    closest = pixel["closest_pairs"][:n]  # the copies of copy 1 come first, each next to its own slice
    assert closest and all(p["synthetic"] >= n and p["own_source"] and p["distance"] < 1e-2 for p in closest)
    assert all(row < n for row in audit["diversity"]["mask_rows"])  # distinct masks: copy 0's rows
    assert audit_is_current(set_dir, made["judge"])
    stale = {**audit, "version": 1}  # an audit of the first copy only, made before
    (set_dir / "audit.json").write_text(json.dumps(stale))
    assert not audit_is_current(set_dir, made["judge"])

    masks = np.load(set_dir / "masks.npy")
    masks[n + 1] = (masks[n + 1] + 1) % 6  # copy 1 of the 2nd slice no longer has its mask
    np.save(set_dir / "masks.npy", masks)
    with pytest.raises(SyntheticSetError, match=r"syn_k2/manifest.json \(copy 1\).*1 synthetic masks differ"):
        audit_from_config(cfg)


def test_audit_stops_on_bad_sets_naming_file_and_defect(made):
    from lcgan_lightning.cli.audit import audit_from_config

    wrong = _copy(made, "syn_masks")
    masks = np.load(wrong / "masks.npy")
    masks[2] = (masks[2] + 1) % 6
    np.save(wrong / "masks.npy", masks)
    with pytest.raises(SyntheticSetError, match=r"syn_masks: masks.npy: 1 synthetic masks differ"):
        audit_from_config(_audit_cfg(made, wrong))
    with pytest.raises(SyntheticSetError, match=r"syn\b.*training slices have no synthetic image"):
        audit_from_config(_audit_cfg(made, made["set"], "fraction=0.5"))  # the set of another subset

    nan = _copy(made, "syn_nan")
    images = np.load(nan / "images.npy")
    images[1, 3, 4] = np.nan
    np.save(nan / "images.npy", images)
    with pytest.raises(SyntheticSetError, match=r"syn_nan: images.npy: 1 synthetic images contain NaN/inf"):
        audit_from_config(_audit_cfg(made, nan))

    bare = _copy(made, "syn_bare")
    (bare / "manifest.json").unlink()
    with pytest.raises(SyntheticSetError, match=r"syn_bare/manifest.json: missing"):
        audit_from_config(_audit_cfg(made, bare))
    for d in (wrong, nan, bare):
        assert not (d / "audit.json").exists()

    with pytest.raises(FileNotFoundError, match="judge_ckpt=.*nope.ckpt: no such file"):
        audit_from_config(_audit_cfg(made, made["set"], f"judge_ckpt={made['root'] / 'nope.ckpt'}"))
