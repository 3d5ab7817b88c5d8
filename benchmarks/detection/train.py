"""A small U-Net trained on CPU on noisy masks; out-of-sample probabilities for held-out images.

Used by ``run.py``. Needs the ``bench`` extra (``pip install -e '.[bench]'``: torch 2.13.0,
the CPU wheel). The paper's protocol (section 4.1): the model is fitted to the noisy
training split, and its predictions on the noisy validation split are what segaudit scores.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image


# The networks live beside the k-fold example, which users copy (they need torch alone).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from stem_unet import StemUNet, UNet, _block  # noqa: E402,F401


def load(photos: Path, masks: Path, ids: list[str], photo_suffix: str = ".png") -> tuple[torch.Tensor, torch.Tensor]:
    """Photos as normalised (N, 3, H, W) float32 and masks as (N, H, W) int64."""
    x = np.stack([np.asarray(Image.open(photos / f"{i}{photo_suffix}").convert("RGB")) for i in ids])
    y = np.stack([np.asarray(Image.open(masks / f"{i}.png")) for i in ids])
    x = (x.astype(np.float32) / 255.0 - 0.5) / 0.25
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y.astype(np.int64))


def train(x: torch.Tensor, y: torch.Tensor, n_classes: int, *, epochs: int, batch: int = 4, lr: float = 3e-3,
          widths=(12, 24, 48, 96), balance: float = 0.5, seed: int = 0, log=print, stride: int = 1,
          ignore_index: int | None = None, crop: tuple[int, int] | None = None) -> nn.Module:
    """Fit the U-Net with cross-entropy (every class, unlabeled included), AdamW and a one-cycle schedule.

    Class k's loss is weighted by (mean frequency / frequency of k) ** ``balance``, so thin
    classes (poles, signs, people) are learnt at all with a few hundred images; 0 = plain
    cross-entropy. ``stride`` > 1 trains a :class:`StemUNet` instead (the plain U-Net at 1);
    pixels labelled ``ignore_index`` take no part in the loss or the class frequencies.
    ``crop`` (height, width): each batch is one random crop of that size (the same window
    for the batch's images), a standard augmentation that also cuts the cost per step.
    """
    torch.manual_seed(seed)
    labelled = y.flatten() if ignore_index is None else y.flatten()[y.flatten() != ignore_index]
    frequency = torch.bincount(labelled, minlength=n_classes)[:n_classes].double().clamp(min=1) / labelled.numel()
    weight = ((frequency.mean() / frequency) ** balance).float()
    generator = torch.Generator().manual_seed(seed)
    model = UNet(n_classes, widths) if stride == 1 else StemUNet(n_classes, widths, stride)
    steps = epochs * ((len(x) + batch - 1) // batch)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.2)
    model.train()
    for epoch in range(epochs):
        start, total, seen = time.perf_counter(), 0.0, 0
        for index in torch.randperm(len(x), generator=generator).split(batch):
            xb, yb = x[index], y[index]
            if crop is not None:
                top = int(torch.randint(0, xb.shape[-2] - crop[0] + 1, (1,), generator=generator))
                left = int(torch.randint(0, xb.shape[-1] - crop[1] + 1, (1,), generator=generator))
                xb = xb[..., top:top + crop[0], left:left + crop[1]]
                yb = yb[..., top:top + crop[0], left:left + crop[1]]
            flip = torch.rand(len(index), generator=generator) < 0.5  # horizontal flips
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            yb = torch.where(flip[:, None, None], yb.flip(-1), yb)
            loss = F.cross_entropy(model(xb), yb, weight=weight,
                                   ignore_index=-100 if ignore_index is None else ignore_index)
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
    """(true, predicted) counts; true labels outside 0..n_classes-1 (an ignore index) are left out."""
    keep = truth.ravel() < n_classes
    return np.bincount(truth.ravel()[keep] * n_classes + pred.ravel()[keep],
                       minlength=n_classes**2).reshape(n_classes, n_classes)


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


# --- K-fold out-of-sample predictions for every image (the real-data benchmark, camvid.py) ---


def _fit_fold(job: dict) -> dict:
    """One fold's model, in a worker process with one torch thread: its state and timings."""
    torch.set_num_threads(job["threads"])
    started = time.perf_counter()
    prefix = f"fold {job['fold']}:"
    x, y = load(job["photos"], job["masks"], job["ids"], job["photo_suffix"])
    loaded = time.perf_counter()
    model = train(x, y, job["n_classes"], epochs=job["epochs"], widths=job["widths"], balance=job["balance"],
                  seed=job["seed"], stride=job["stride"], ignore_index=job["ignore_index"], crop=job["crop"],
                  log=lambda message: print(f"[{time.strftime('%H:%M:%S')}] {prefix}{message}", flush=True))
    return {"state": {k: v.numpy() for k, v in model.state_dict().items()},
            "load_seconds": loaded - started, "train_seconds": time.perf_counter() - loaded}


def train_kfold_and_predict(photos: Path, noisy_masks: Path, clean_masks: Path, folds: list[list[str]],
                            store: Path, classes: list[str], *, epochs: int, widths=(16, 32, 64, 128),
                            stride: int = 4, balance: float = 0.5, seed: int = 0, ignore_index: int | None = None,
                            photo_suffix: str = ".png", workers: int = 2, crop: tuple[int, int] | None = None,
                            log=print) -> dict:
    """K-fold: one model per fold, trained on the other folds' noisy images, predicts its fold.

    Every image gets out-of-sample probabilities, written to one store. The folds' models
    train in parallel, ``workers`` processes with one torch thread each (on 2 cores two
    one-thread processes are faster than one two-thread process: the small convolutions
    are memory bound). Returns the accuracy of the out-of-sample predictions against the
    CLEAN masks (ignored pixels left out), with the timings.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from segaudit import PredictionWriter

    n_classes = len(classes)
    started = time.perf_counter()
    jobs = []
    for k in range(len(folds)):
        ids = [i for j, fold in enumerate(folds) if j != k for i in fold]
        jobs.append({"fold": k, "photos": photos, "masks": noisy_masks, "ids": ids, "photo_suffix": photo_suffix,
                     "n_classes": n_classes, "epochs": epochs, "widths": tuple(widths), "balance": balance,
                     "seed": seed + k, "stride": stride, "ignore_index": ignore_index, "crop": crop,
                     "threads": max(1, torch.get_num_threads() // min(workers, len(folds)))})
    with ProcessPoolExecutor(min(workers, len(folds)), mp_context=multiprocessing.get_context("spawn")) as pool:
        fitted = list(pool.map(_fit_fold, jobs))
    trained = time.perf_counter()
    matrix = np.zeros((n_classes, n_classes), np.int64)
    parameters = 0
    with PredictionWriter(store, classes=classes, dtype="float16", overwrite=True) as writer:
        for k, fold in enumerate(folds):
            model = UNet(n_classes, widths) if stride == 1 else StemUNet(n_classes, widths, stride)
            model.load_state_dict({name: torch.from_numpy(v) for name, v in fitted[k]["state"].items()})
            parameters = sum(p.numel() for p in model.parameters())
            for start in range(0, len(fold), 16):
                ids = fold[start:start + 16]
                x, _ = load(photos, noisy_masks, ids, photo_suffix)
                _, clean = load(photos, clean_masks, ids, photo_suffix)
                for offset, probs in predict(model, x, batch=16):
                    writer.write_batch(ids[offset:offset + len(probs)], probs)
                    matrix += confusion(probs.argmax(1), clean[offset:offset + len(probs)].numpy(), n_classes)
    real = list(range(n_classes))
    return {
        "miou": miou(matrix, real),
        "pixel_accuracy": float(np.trace(matrix) / matrix.sum()),
        "iou_per_class": {classes[k]: miou(matrix, [k]) for k in real if matrix[k].sum() or matrix[:, k].sum()},
        "train_seconds": trained - started,
        "fold_train_seconds": [f["train_seconds"] for f in fitted],
        "predict_seconds": time.perf_counter() - trained,
        "images": sum(len(f) for f in folds),
        "folds": len(folds),
        "epochs": epochs,
        "widths": list(widths),
        "stride": stride,
        "crop": list(crop) if crop else None,
        "balance": balance,
        "parameters": parameters,
    }
