"""Real-vs-generated CNN classifier used to judge realism (paper §3.2.3).

One classifier is trained per data fraction on the images of ALL candidates of that fraction
together with real slices, then each candidate is scored by the share of its HELD-OUT images the
classifier calls real ("fooled" share). Label 1 = real, 0 = generated; p(real) = sigmoid(logit).

Sampling (documented contract, all draws from one seeded generator):

1. every candidate contributes the same number of images, ``n = min(per_candidate, smallest
   candidate set)``, drawn without replacement from its generated images;
2. each candidate's ``n`` images are split: ``round(n * holdout)`` held out (scored, never trained
   on), the rest used for training;
3. real images: the real pool is split the same way (``holdout`` share held out); the classifier
   trains on exactly as many real images as generated ones (k candidates x n_train each), drawn
   without replacement, or with replacement when the pool is too small (then
   ``real_with_replacement`` is true in the result);
4. a candidate's fooled share at threshold t = mean over its held-out images of [p(real) >= t].
   The paper lowers t to 0.1; 0.5 is reported as well.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import update_bn

log = logging.getLogger(__name__)


class CompactCNN(nn.Module):
    """Small conv net (conv-BN-ReLU x2 per stage, max-pool) for CPU runs; outputs one logit."""

    def __init__(self, width: int = 16, stages: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i in range(stages):
            c_out = width * 2**i
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, 1)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.head(self.features(x).mean(dim=(2, 3))).squeeze(1)


class Inception(nn.Module):
    """GoogLeNet inception block: 1x1 | 1x1->3x3 | 1x1->5x5 | maxpool->1x1, concatenated."""

    def __init__(self, c_in: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, cp: int) -> None:
        super().__init__()

        def cbr(i: int, o: int, k: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, k, padding=k // 2, bias=False), nn.BatchNorm2d(o), nn.ReLU(True))

        self.b1 = cbr(c_in, c1, 1)
        self.b3 = nn.Sequential(cbr(c_in, c3r, 1), cbr(c3r, c3, 3))
        self.b5 = nn.Sequential(cbr(c_in, c5r, 1), cbr(c5r, c5, 5))
        self.bp = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), cbr(c_in, cp, 1))
        self.out_channels = c1 + c3 + c5 + cp

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)


class GoogLeNetLike(nn.Module):
    """GoogLeNet-style classifier (stem + inception 3a/3b, 4a/4b, global pool) as in the paper.

    `width` scales every channel count (GoogLeNet's own numbers at width=64 would be heavy on
    CPU; widths are 1/4 of GoogLeNet at the default 16). Single-channel input, one logit.
    """

    def __init__(self, width: int = 16, dropout: float = 0.4) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(
            nn.Conv2d(1, w, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(True),
            nn.Conv2d(w, 3 * w, 3, padding=1, bias=False),
            nn.BatchNorm2d(3 * w),
            nn.ReLU(True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        # channel ratios of GoogLeNet 3a, 3b, 4a, 4b divided by 4 (x w/16)
        s = w / 16
        r = lambda n: max(1, int(round(n * s)))  # noqa: E731
        a3 = Inception(3 * w, r(16), r(24), r(32), r(4), r(8), r(8))
        b3 = Inception(a3.out_channels, r(32), r(32), r(48), r(8), r(24), r(16))
        a4 = Inception(b3.out_channels, r(48), r(24), r(52), r(4), r(12), r(16))
        b4 = Inception(a4.out_channels, r(40), r(28), r(56), r(6), r(16), r(16))
        self.blocks = nn.Sequential(a3, b3, nn.MaxPool2d(3, stride=2, padding=1), a4, b4)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(b4.out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        feats = self.blocks(self.stem(x)).mean(dim=(2, 3))
        return self.head(self.dropout(feats)).squeeze(1)


ARCHITECTURES = {"compact": CompactCNN, "googlenet": GoogLeNetLike}


@dataclass
class RealismConfig:
    """Settings of the realism classifier (conf/realism/*.yaml)."""

    arch: str = "compact"  # compact | googlenet
    width: int = 16
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    per_candidate: int = 64  # images drawn from every candidate (capped by the smallest set)
    holdout: float = 0.5  # share of each candidate's (and the real pool's) images held out
    thresholds: tuple[float, ...] = (0.1, 0.5)
    seed: int = 0


@dataclass
class RealismResult:
    """What the classifier said about each candidate, plus how it was trained."""

    fooled: dict[str, dict[str, float]]  # candidate -> {"0.1": share, "0.5": share}
    mean_p_real: dict[str, float]  # candidate -> mean p(real) over its held-out images
    real_heldout_called_real: dict[str, float]  # threshold -> share of held-out REAL called real
    n_per_candidate_train: int
    n_per_candidate_heldout: int
    n_real_train: int
    n_real_heldout: int
    real_with_replacement: bool
    train_loss: list[float] = field(default_factory=list)
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able form."""
        return asdict(self)


def build_classifier(cfg: RealismConfig) -> nn.Module:
    """The configured real-vs-generated network."""
    if cfg.arch not in ARCHITECTURES:
        raise ValueError(f"realism.arch={cfg.arch!r} is unknown; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[cfg.arch](width=cfg.width)


def _as_batch(x: Tensor) -> Tensor:
    x = torch.as_tensor(x)
    return (x.unsqueeze(1) if x.ndim == 3 else x).float()


@torch.no_grad()
def predict_p_real(model: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """p(real) for images [B,1,H,W] (or [B,H,W]) in [-1,1]."""
    model.eval()
    images = _as_batch(images)
    out = [torch.sigmoid(model(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0)


def train_and_score(real: Tensor, fakes: dict[str, Tensor], cfg: RealismConfig) -> tuple[nn.Module, RealismResult]:
    """Train one classifier on `real` vs all `fakes` (name -> images) and score each candidate.

    Images are [N,1,H,W] or [N,H,W] in [-1,1]. Deterministic for a given `cfg.seed` on CPU.
    """
    if not fakes:
        raise ValueError("realism classifier needs at least one candidate's generated images")
    real = _as_batch(real)
    fakes = {k: _as_batch(v) for k, v in fakes.items()}
    n = min([cfg.per_candidate] + [len(v) for v in fakes.values()])
    n_hold = int(round(n * cfg.holdout))
    n_train = n - n_hold
    if n_hold < 1 or n_train < 1:
        raise ValueError(
            f"realism: {n} images per candidate with holdout={cfg.holdout} leaves no train or held-out "
            "images; generate more images (max_images) or change realism.holdout"
        )
    if len(real) < 2:
        raise ValueError(f"realism: need at least 2 real images, got {len(real)}")

    gen = torch.Generator().manual_seed(cfg.seed)
    fake_train, fake_hold = [], {}
    for name in sorted(fakes):
        idx = torch.randperm(len(fakes[name]), generator=gen)[:n]
        fake_train.append(fakes[name][idx[:n_train]])
        fake_hold[name] = fakes[name][idx[n_train:]]
    fake_train_t = torch.cat(fake_train)

    perm = torch.randperm(len(real), generator=gen)
    r_hold_n = max(1, int(round(len(real) * cfg.holdout)))
    real_hold, real_pool = real[perm[:r_hold_n]], real[perm[r_hold_n:]]
    need = len(fake_train_t)
    with_replacement = need > len(real_pool)
    if with_replacement:
        log.warning("realism: %d real training images needed, pool has %d: sampling with replacement", need, len(real_pool))
        ridx = torch.randint(len(real_pool), (need,), generator=gen)
    else:
        ridx = torch.randperm(len(real_pool), generator=gen)[:need]
    real_train = real_pool[ridx]

    x = torch.cat([real_train, fake_train_t])
    y = torch.cat([torch.ones(len(real_train)), torch.zeros(len(fake_train_t))])

    torch.manual_seed(cfg.seed)
    model = build_classifier(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses: list[float] = []
    for _ in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), cfg.batch_size):
            b = order[start : start + cfg.batch_size]
            if len(b) < 2:  # BatchNorm needs 2+ samples
                continue
            loss = F.binary_cross_entropy_with_logits(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        losses.append(total / len(x))
    # "precise BN": running statistics = exact mean/var over the training images (with few steps the
    # exponential averages still remember their initial values, and eval predictions would be off)
    update_bn([x[i : i + cfg.batch_size] for i in range(0, len(x), cfg.batch_size)], model)
    model.eval()

    fooled, mean_p = {}, {}
    for name, imgs in fake_hold.items():
        p = predict_p_real(model, imgs, cfg.batch_size)
        fooled[name] = {str(t): float((p >= t).float().mean()) for t in cfg.thresholds}
        mean_p[name] = float(p.mean())
    p_real = predict_p_real(model, real_hold, cfg.batch_size)
    real_ok = {str(t): float((p_real >= t).float().mean()) for t in cfg.thresholds}
    result = RealismResult(
        fooled=fooled,
        mean_p_real=mean_p,
        real_heldout_called_real=real_ok,
        n_per_candidate_train=n_train,
        n_per_candidate_heldout=n_hold,
        n_real_train=len(real_train),
        n_real_heldout=len(real_hold),
        real_with_replacement=bool(with_replacement),
        train_loss=losses,
        config={**asdict(cfg), "thresholds": list(cfg.thresholds)},
    )
    return model, result


def realism_config(node: dict | None) -> RealismConfig:
    """Build a RealismConfig from a config mapping, rejecting unknown keys by name."""
    node = dict(node or {})
    known = set(RealismConfig.__dataclass_fields__)
    unknown = sorted(set(node) - known)
    if unknown:
        raise ValueError(f"unknown realism config key(s) {unknown}; known: {sorted(known)}")
    if "thresholds" in node:
        node["thresholds"] = tuple(float(t) for t in node["thresholds"])
    return RealismConfig(**node)
