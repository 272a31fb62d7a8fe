"""model.postprocess=region_majority: values by hand, and the Segmenter applies it to every prediction."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from lcgan_lightning.errors import ConfigError
from lcgan_lightning.models.postprocess import postprocess_labels, region_majority
from lcgan_lightning.models.segmenter import Segmenter, load_segmenter

IPH, IVH, SAH, EDH, SDH = 1, 2, 3, 4, 5


def _two_class_lesion() -> torch.Tensor:
    """One 8x8 map: a region of 6 IVH + 2 SDH pixels, a separate SDH region, a 2+2 tie region."""
    lab = torch.zeros(8, 8, dtype=torch.long)
    lab[1, 1:4] = IVH
    lab[2, 1:4] = IVH
    lab[2, 4] = SDH  # 4-connected to the IVH
    lab[3, 5] = SDH  # only diagonally connected to the SDH above: same region (8-connectivity)
    lab[6, 0] = SDH  # a region of its own: stays SDH
    lab[6, 5:7] = EDH  # tie 2 EDH : 2 SAH -> the lower id, SAH
    lab[7, 5:7] = SAH
    return lab[None]


def test_region_majority_relabels_each_region_with_its_majority_class():
    out = region_majority(_two_class_lesion(), num_classes=6)[0]
    expected = torch.zeros(8, 8, dtype=torch.long)
    expected[1, 1:4] = expected[2, 1:4] = IVH
    expected[2, 4] = expected[3, 5] = IVH
    expected[6, 0] = SDH
    expected[6:8, 5:7] = SAH
    assert torch.equal(out, expected)


def test_region_majority_keeps_the_binary_mask_and_a_one_class_map_unchanged():
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.integers(0, 6, (4, 16, 16)) * (rng.random((4, 16, 16)) < 0.3))
    out = region_majority(labels, num_classes=6)
    assert torch.equal(out > 0, labels > 0) and out.dtype == labels.dtype
    one_class = (labels > 0).long() * EDH
    assert torch.equal(region_majority(one_class, 6), one_class)
    assert torch.equal(region_majority(torch.zeros(2, 5, 5, dtype=torch.long), 6), torch.zeros(2, 5, 5, dtype=torch.long))


def test_postprocess_none_returns_the_labels_and_an_unknown_name_is_refused():
    labels = _two_class_lesion()
    assert postprocess_labels(labels, "none", 6) is labels
    with pytest.raises(ConfigError, match="model.postprocess='largest'"):
        postprocess_labels(labels, "largest", 6)
    with pytest.raises(ConfigError, match="model.postprocess='largest'"):
        Segmenter(arch="fcn8s", width=0.125, postprocess="largest")


class _FixedLogits(nn.Module):
    """Logits whose argmax is the two-class map, whatever the image."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        lab = _two_class_lesion()[0]
        logits = torch.nn.functional.one_hot(lab, 6).permute(2, 0, 1).float()
        return logits[None].repeat(len(images), 1, 1, 1) + 0 * images.mean()


class _Slices(torch.utils.data.Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, i):
        return {"image": torch.zeros(1, 8, 8), "mask": _two_class_lesion()[0], "patient": f"p{i}",
                "volume": f"p{i}_v", "slice": i}


def test_segmenter_postprocesses_predict_masks_and_the_test_files(tmp_path):
    model = Segmenter(arch="fcn8s", width=0.125, postprocess="region_majority", n_overlay=0)
    model.net = _FixedLogits()
    raw = _two_class_lesion()
    expected = region_majority(raw, 6)
    assert torch.equal(model.predict_masks(torch.zeros(2, 1, 8, 8)), expected.repeat(2, 1, 1))
    assert not torch.equal(expected, raw)  # the map did change

    trainer = pl.Trainer(default_root_dir=str(tmp_path), logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    result = trainer.test(model, DataLoader(_Slices(), batch_size=2), verbose=False)[0]
    with np.load(tmp_path / "predictions.npz") as z:
        assert np.array_equal(z["pred"], expected.repeat(3, 1, 1).numpy())
    # the truth is the raw two-class map: post-processing turned a perfect prediction into IVH for SDH
    assert result["test/dsc"] < 1.0

    plain = Segmenter(arch="fcn8s", width=0.125, n_overlay=0)
    plain.net = _FixedLogits()
    assert torch.equal(plain.predict_masks(torch.zeros(1, 1, 8, 8)), raw)


def test_postprocess_travels_with_the_checkpoint(tmp_path):
    model = Segmenter(arch="fcn8s", width=0.125, postprocess="region_majority")
    path = tmp_path / "judge.ckpt"
    torch.save({"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}, path)
    loaded = load_segmenter(path)
    assert loaded.hparams.postprocess == "region_majority"
    # a checkpoint written before the option existed predicts without post-processing
    old = {k: v for k, v in model.hparams.items() if k != "postprocess"}
    torch.save({"hyper_parameters": old, "state_dict": model.state_dict()}, path)
    assert load_segmenter(path).hparams.get("postprocess", "none") == "none"
