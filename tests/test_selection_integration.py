"""Selection and synthesis against the project's real LcGAN generator and segmenter (untrained, 32²)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

lcgan = pytest.importorskip("lcgan_lightning.models.lcgan")
segmenter = pytest.importorskip("lcgan_lightning.models.segmenter")

from test_selection import make_slices  # noqa: E402

from lcgan_lightning.models import generation  # noqa: E402
from lcgan_lightning.selection import candidates, realism, score  # noqa: E402
from lcgan_lightning.synthesize import regenerate_from_manifest, synthesize  # noqa: E402

SIZE = 32


def _save_lcgan_ckpt(path: Path, fraction: float, epochs: int, seed: int) -> None:
    """A checkpoint in the layout Lightning writes for LcGAN (weights, hparams, run config, epoch)."""
    torch.manual_seed(seed)
    model = lcgan.LcGAN(image_size=SIZE, ngf=8, ndf=8, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "epoch": epochs - 1,
                "run_config": {"data": {"fraction": fraction}, "trainer": {"max_epochs": epochs}}}, path)


def test_real_generator_and_judge_end_to_end(tmp_path):
    gan = tmp_path / "gan"
    for i, e in enumerate((2, 4)):
        _save_lcgan_ckpt(gan / f"frac=0.1/epochs=4/checkpoints/epoch={e:03d}.ckpt", 0.1, e, seed=i)
    cands, skipped = candidates.discover_candidates(gan)
    assert [(c.fraction, c.epochs) for c in cands] == [(0.1, 2), (0.1, 4)] and not skipped

    torch.manual_seed(0)
    judge = segmenter.Segmenter(arch="basicunet", width=0.125).eval()
    eval_set = score.make_eval_set(make_slices(12, SIZE, 1), make_slices(16, SIZE, 2), max_images=8, seed=0)
    cfg = realism.RealismConfig(epochs=1, per_candidate=8, holdout=0.5, batch_size=8, width=4, seed=0)
    selected = score.run_scoring(cands, eval_set, judge, lambda p: generation.load_generator(p), tmp_path / "out",
                                 seed=0, realism_cfg=cfg, fid=True, sheet_columns=3)
    scores = json.loads((tmp_path / "out/scores.json").read_text())
    assert set(selected) == {"0.1"} and selected["0.1"]["epochs"] in (2, 4)
    for r in scores["candidates"]:
        assert 0.0 <= r["fcn_score"] <= 1.0 and r["sharpness"] > 0 and r["fid"] is not None

    # synthesis with the real generator reproduces bit for bit from its manifest
    data = make_slices(6, SIZE, 3)
    manifest = synthesize(cands[0].checkpoint, data, tmp_path / "syn", fraction=0.1, seed=5, previews=2,
                          load_generator=generation.load_generator)
    images = np.load(tmp_path / "syn/images.npy")
    again, _ = regenerate_from_manifest(tmp_path / "syn/manifest.json", data, load_generator=generation.load_generator)
    assert manifest["n"] == 6 and np.array_equal(images, again)

    # the segmenter's augment=gan reader accepts the set and matches it to the training slices
    synthetic_set = pytest.importorskip("lcgan_lightning.data.synthetic_set")
    syn = synthetic_set.read_synthetic_set(tmp_path / "syn")
    assert np.array_equal(np.asarray(syn.images), images) and np.array_equal(np.asarray(syn.masks), data.masks)
    matched = synthetic_set.match_synthetic_set(syn, data.select(np.arange(5, -1, -1)), "test")
    assert np.array_equal(np.asarray(matched.images), images[::-1])


def _compose(name: str, tmp_path: Path, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from lcgan_lightning.paths import CONF_DIR

    base = [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path / name}", "data.image_size=32",
            "data.phantom.num_patients=12", "data.phantom.num_slices=8", "seed=3"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(name, overrides=base + overrides)


def test_select_and_synthesize_commands_on_the_phantom(tmp_path):
    """The Hydra apps' code paths: phantom data + splits, discovered checkpoints, judge checkpoint."""
    import pytorch_lightning as pl

    from lcgan_lightning.cli.select import select_generators
    from lcgan_lightning.cli.synthesize import synthesize_from_config

    for e in (1, 3):
        _save_lcgan_ckpt(tmp_path / f"gan/frac=0.25/epochs=3/checkpoints/epoch={e:03d}.ckpt", 0.25, e, seed=e)
    judge = segmenter.Segmenter(arch="basicunet", width=0.125)
    judge_ckpt = tmp_path / "judge.ckpt"
    torch.save({"state_dict": judge.state_dict(), "hyper_parameters": dict(judge.hparams),
                "pytorch-lightning_version": pl.__version__}, judge_ckpt)

    cfg = _compose("select", tmp_path, [f"candidates_dir={tmp_path / 'gan'}", f"judge_ckpt={judge_ckpt}",
                                        f"data.splits_path={tmp_path / 'splits.json'}", "max_images=8",
                                        "realism.epochs=1", "realism.width=4", "sheet_columns=2"])
    selected = select_generators(cfg)
    assert list(selected) == ["0.25"] and selected["0.25"]["epochs"] in (1, 3)
    scores = json.loads((tmp_path / "select/scores.json").read_text())
    splits = json.loads((tmp_path / "splits.json").read_text())
    assert {s["patient"] for s in scores["eval_slices"]} <= set(splits["val"])  # validation patients only
    assert (tmp_path / "select/contact_sheet_frac=0.25.png").is_file()

    cfg = _compose("synthesize", tmp_path, [f"selected_json={tmp_path / 'select/selected.json'}",
                                            "data.fraction=0.25", f"splits_path={tmp_path / 'splits.json'}",
                                            f"out_dir={tmp_path / 'syn'}"])
    manifest = synthesize_from_config(cfg)
    assert manifest["checkpoint"] == str(Path(selected["0.25"]["checkpoint"]).resolve())
    assert {s["patient"] for s in manifest["source"]} == set(splits["subsets"]["0.25"])
    with pytest.raises(FileExistsError, match="overwrite=true"):
        synthesize_from_config(cfg)
