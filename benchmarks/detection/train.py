"""A small U-Net trained on CPU on noisy masks; out-of-sample probabilities for held-out images.

Used by ``run.py``. Needs the ``bench`` extra (``pip install -e '.[bench]'``: torch 2.13.0,
the CPU wheel). The paper's protocol (section 4.1): the model is fitted to the noisy
training split, and its predictions on the noisy validation split are what segaudit scores.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder-decoder with skip connections; ``widths`` per level, 2x2 max-pooling between levels."""

    def __init__(self, n_classes: int, widths=(16, 32, 64, 128)):
        super().__init__()
        self.down = nn.ModuleList([_block(3, widths[0])] +
                                  [_block(widths[i], widths[i + 1]) for i in range(len(widths) - 1)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                 for i in range(len(widths) - 1)])
        self.merge = nn.ModuleList([_block(2 * widths[i], widths[i]) for i in range(len(widths) - 1)])
        self.head = nn.Conv2d(widths[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.down):
            x = block(x)
            if level < len(self.down) - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for level in reversed(range(len(self.up))):
            x = self.merge[level](torch.cat([self.up[level](x), skips[level]], dim=1))
        return self.head(x)


def load(photos: Path, masks: Path, ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Photos as normalised (N, 3, H, W) float32 and masks as (N, H, W) int64."""
    x = np.stack([np.asarray(Image.open(photos / f"{i}.png").convert("RGB")) for i in ids])
    y = np.stack([np.asarray(Image.open(masks / f"{i}.png")) for i in ids])
    x = (x.astype(np.float32) / 255.0 - 0.5) / 0.25
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y.astype(np.int64))


def train(x: torch.Tensor, y: torch.Tensor, n_classes: int, *, epochs: int, batch: int = 4, lr: float = 3e-3,
          widths=(12, 24, 48, 96), balance: float = 0.5, seed: int = 0, log=print) -> UNet:
    """Fit the U-Net with cross-entropy (every class, unlabeled included), AdamW and a one-cycle schedule.

    Class k's loss is weighted by (mean frequency / frequency of k) ** ``balance``, so thin
    classes (poles, signs, people) are learnt at all with a few hundred images; 0 = plain
    cross-entropy.
    """
    torch.manual_seed(seed)
    frequency = torch.bincount(y.flatten(), minlength=n_classes).double().clamp(min=1) / y.numel()
    weight = ((frequency.mean() / frequency) ** balance).float()
    generator = torch.Generator().manual_seed(seed)
    model = UNet(n_classes, widths)
    steps = epochs * ((len(x) + batch - 1) // batch)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.2)
    model.train()
    for epoch in range(epochs):
        start, total, seen = time.perf_counter(), 0.0, 0
        for index in torch.randperm(len(x), generator=generator).split(batch):
            xb, yb = x[index], y[index]
            flip = torch.rand(len(index), generator=generator) < 0.5  # horizontal flips
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            yb = torch.where(flip[:, None, None], yb.flip(-1), yb)
            loss = F.cross_entropy(model(xb), yb, weight=weight)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(index)
            seen += len(index)
        log(f"  epoch {epoch + 1}/{epochs}: loss {total / seen:.4f} ({time.perf_counter() - start:.1f} s)")
    return model


@torch.no_grad()
def predict(model: UNet, x: torch.Tensor, batch: int = 32):
    """Softmax probabilities (N, K, H, W) float32, averaged with the horizontally flipped image."""
    model.eval()
    for start in range(0, len(x), batch):
        xb = x[start:start + batch]
        probs = F.softmax(model(xb), dim=1) + F.softmax(model(xb.flip(-1)), dim=1).flip(-1)
        yield start, (probs / 2).numpy()


def confusion(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(truth.ravel() * n_classes + pred.ravel(), minlength=n_classes**2).reshape(n_classes, n_classes)


def miou(matrix: np.ndarray, classes: list[int]) -> float:
    """Mean IoU over ``classes`` from a (true, predicted) confusion matrix."""
    inter = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - inter
    return float(np.mean([inter[k] / union[k] for k in classes if union[k]]))


def train_and_predict(photos: Path, noisy_masks: Path, clean_masks: Path, train_ids: list[str], val_ids: list[str],
                      store: Path, classes: list[str], *, epochs: int, widths=(12, 24, 48, 96), balance: float = 0.5,
                      seed: int = 0, log=print) -> dict:
    """Train on the noisy training split, write the validation split's probabilities to ``store``.

    Returns the model's accuracy on the validation split against the CLEAN masks.
    """
    from segaudit import PredictionWriter

    n_classes = len(classes)
    started = time.perf_counter()
    x, y = load(photos, noisy_masks, train_ids)
    model = train(x, y, n_classes, epochs=epochs, widths=widths, balance=balance, seed=seed, log=log)
    trained = time.perf_counter()
    xv, _ = load(photos, noisy_masks, val_ids)
    _, yv_clean = load(photos, clean_masks, val_ids)
    matrix = np.zeros((n_classes, n_classes), np.int64)
    with PredictionWriter(store, classes=classes, dtype="float16", overwrite=True) as writer:
        for start, probs in predict(model, xv):
            writer.write_batch(val_ids[start:start + len(probs)], probs)
            matrix += confusion(probs.argmax(1), yv_clean[start:start + len(probs)].numpy(), n_classes)
    return {
        "miou": miou(matrix, list(range(1, n_classes))),  # the real classes (not unlabeled)
        "miou_all_classes": miou(matrix, list(range(n_classes))),
        "pixel_accuracy": float(np.trace(matrix) / matrix.sum()),
        "iou_per_class": {classes[k]: miou(matrix, [k]) for k in range(n_classes) if matrix[k].sum() or matrix[:, k].sum()},
        "train_seconds": trained - started,
        "predict_seconds": time.perf_counter() - trained,
        "train_images": len(train_ids),
        "val_images": len(val_ids),
        "epochs": epochs,
        "widths": list(widths),
        "balance": balance,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
