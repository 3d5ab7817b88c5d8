"""Out-of-fold predictions for segaudit from a PyTorch model trained with k-fold cross-validation, on a CPU.

segaudit needs each image's predicted class probabilities from a model that did NOT train
on that image: a model that saw an image's label has learned its mistakes too, and then it
agrees with them. K-fold cross-validation gives every image such a prediction: split the
images into k folds, and for each fold train on the other k-1 and predict the held-out one.

    segaudit folds masks/ -k 5 -o folds.csv [--group-by REGEX]      # the split (groups kept together)
    python examples/pytorch_kfold.py --images images/ --masks masks/ --classes 11 \\
        --ignore-index 11 --size 180x240 --folds folds.csv -o preds.zarr
    segaudit score masks/ preds.zarr --folds folds.csv --ignore-index 11 -o ranking.csv

- ``--masks`` is the masks directory segaudit scores; image ids are its relative paths
  without extension, and the image of id ``city/a`` is ``images/city/a.<png|jpg|...>``.
- ``--folds`` is a table from ``segaudit folds`` (only the images it lists are used) or a
  number k (then the same split is made here). Each image's array in the store records the
  fold whose model predicted it, so ``segaudit score --folds folds.csv`` can check that no
  image was predicted by a model that trained on it.
- ``--size HxW`` trains and predicts at that size (photos resized bilinearly, masks by
  nearest neighbour); the logits are resized back to each mask's own size before the
  softmax, since segaudit compares the probabilities with the masks pixel by pixel.
- ``--ignore-index`` (255 by default; CamVid's void is 11) and ``--label-map`` (the names
  and files of ``segaudit score --label-map``) say what the mask values mean, as they do
  for ``segaudit score``: pass the same values to both.
- The predictions go into the store through ``PredictionWriter``, one batch at a time,
  float16, checked as they are written. If the script dies mid-way, the store is marked
  incomplete and ``segaudit score`` refuses it instead of scoring half a dataset.

The default model, ``stem-unet`` (:class:`stem_unet.StemUNet`, 0.5 M parameters, torch
alone, no torchvision), learns on a CPU in minutes: on 120 CamVid scenes at 180x240 it
reached the mIoU given in docs/predictions.md. What makes it cheap per CPU-second: the
images are decoded once and kept as tensors; the network runs at 1/4 resolution and its
logits are resized once, straight to the size that is needed (half the training size for
the loss, the mask's size for the probabilities); channels-last tensors; and on a CPU the
folds are trained in parallel processes (``--jobs``, one per core by default), which use
the cores better than several threads in one small model. ``--model tiny`` is a few
convolutions (for a smoke test). ``--model deeplabv3`` is torchvision's
DeepLabV3-MobileNetV3 (random weights; ``--pretrained-backbone`` downloads ImageNet ones)
for a GPU. torch is not a segaudit dependency (``pip install torch --index-url
https://download.pytorch.org/whl/cpu`` gets the small CPU wheel). ``make_model`` and
``train`` are deliberately plain; replace them with your own. The part that matters for
segaudit is ``predict`` and the loop in ``main``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # stem_unet.py, beside this file

from segaudit import PredictionWriter
from segaudit.io.masks import find_masks, read_mask

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
LAYOUT = torch.channels_last  # oneDNN's CPU convolutions are about 15% faster on NHWC tensors


class Scenes:
    """The images and their labels, decoded once and kept in memory as compact tensors.

    ``photos[n]``: (3, H, W) uint8; ``labels[n]``: (H, W) int32 class indices (mask values
    translated by ``lookup``, a segaudit label map's lookup; the values it ignores become
    ``ignore_index``); ``mask_sizes[n]``: the mask's own (H, W), at which the probabilities are
    written. ``size`` (H, W): photos are resized bilinearly and labels by nearest neighbour.
    Decoding once costs a few seconds; decoding every epoch costs more than a small model's
    training step. Memory: about 7 bytes per pixel at the training size (uint8 RGB, int32 labels).
    """

    def __init__(self, images: Path, masks: Path, mask_suffix: str = "", size: tuple[int, int] | None = None,
                 lookup=None, only: set[str] | None = None):
        self.ids, self.photos, self.labels, self.mask_sizes = [], [], [], []
        for mask in find_masks(masks, mask_suffix):
            if only is not None and mask.image_id not in only:
                continue
            candidates = [images / f"{mask.image_id}{suffix}" for suffix in IMAGE_SUFFIXES]
            image = next((path for path in candidates if path.is_file()), None)
            if image is None:
                raise SystemExit(f"error: no image for mask {mask.path} (looked for {candidates[0]} etc.)")
            labels = read_mask(mask, label_map=lookup)
            photo = Image.open(image).convert("RGB")
            mask_size = labels.shape
            if size is not None:
                photo = photo.resize(size[::-1], Image.BILINEAR)
                labels = np.asarray(Image.fromarray(labels).resize(size[::-1], Image.NEAREST))
            elif photo.size != mask_size[::-1]:
                raise SystemExit(f"error: {image} is {photo.size[0]}x{photo.size[1]} (WxH) but its mask is "
                                 f"{mask_size[1]}x{mask_size[0]}: pass --size HxW")
            self.ids.append(mask.image_id)
            self.photos.append(torch.from_numpy(np.array(photo, dtype=np.uint8)).permute(2, 0, 1).contiguous())
            self.labels.append(torch.from_numpy(labels.astype(np.int32)))
            self.mask_sizes.append(tuple(mask_size))

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) normalised float32 images and (B, H, W) int64 labels of ``indices``."""
        photos = [self.photos[n] for n in indices]
        images = (torch.stack(photos).float() / 255 - MEAN) / STD
        return images, torch.stack([self.labels[n] for n in indices]).long()


class TinySegmenter(torch.nn.Module):
    """A few convolutions: enough to run the pipeline end to end, not to find errors."""

    def __init__(self, n_classes: int, width: int = 16):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(width, n_classes, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


class _LogitsOnly(torch.nn.Module):
    """torchvision's segmentation models return {"out": logits}; the loop wants the logits."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)["out"]


def make_model(n_classes: int, kind: str = "stem-unet", pretrained_backbone: bool = False) -> torch.nn.Module:
    """A segmentation network returning (B, K, h, w) logits, at any resolution (the loop resizes them).

    ``stem-unet`` (:class:`stem_unet.StemUNet`: stride 4, channels 16-128, torch only),
    ``tiny`` (:class:`TinySegmenter`) or ``deeplabv3`` (torchvision's DeepLabV3-MobileNetV3;
    random weights unless ``pretrained_backbone``, which downloads them).
    """
    if kind == "stem-unet":
        from stem_unet import StemUNet

        return StemUNet(n_classes, widths=(16, 32, 64, 128), stride=4, upsample=False)
    if kind == "tiny":
        return TinySegmenter(n_classes)
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    return _LogitsOnly(deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone="DEFAULT" if pretrained_backbone else None, num_classes=n_classes))


def class_weights(scenes: Scenes, indices: list[int], n_classes: int, ignore_index: int,
                  power: float = 0.5) -> torch.Tensor:
    """(mean frequency / frequency of k) ** power: thin classes (poles, signs, people) are learnt at all."""
    counts = torch.zeros(n_classes, dtype=torch.float64)
    for n in indices:
        labels = scenes.labels[n]
        labels = labels[(labels != ignore_index) & (labels >= 0) & (labels < n_classes)].long()
        counts += torch.bincount(labels, minlength=n_classes)[:n_classes].double()
    frequency = counts.clamp(min=1) / counts.sum().clamp(min=1)
    return ((frequency.mean() / frequency) ** power).float()


def train(model: torch.nn.Module, scenes: Scenes, indices: list[int], epochs: int, batch_size: int,
          device: torch.device, ignore_index: int, weight: torch.Tensor | None = None, lr: float = 3e-3,
          seed: int = 0, label: str = "") -> None:
    """Cross-entropy (class-weighted), AdamW with a one-cycle schedule, horizontal flips.

    The loss is taken at half the training size (labels subsampled 2x2, logits resized to
    them): the full-size loss and its bilinear upsampling cost as much as the network itself
    on a CPU, for little accuracy (the predictions are still made at the mask's size).
    """
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4, foreach=True)
    steps = max(1, len(indices) // batch_size)  # the last partial batch is dropped (BatchNorm dislikes tiny ones)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=epochs * steps, pct_start=0.2)
    loss_fn = torch.nn.CrossEntropyLoss(weight=None if weight is None else weight.to(device),
                                        ignore_index=ignore_index)
    shuffle = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        started, total = time.perf_counter(), 0.0
        order = torch.randperm(len(indices), generator=shuffle).tolist()
        for step in range(steps):
            images, labels = scenes.batch([indices[n] for n in order[step * batch_size:(step + 1) * batch_size]])
            flip = torch.rand(len(images), generator=shuffle) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(-1), images).to(device, memory_format=LAYOUT)
            labels = torch.where(flip[:, None, None], labels.flip(-1), labels)[:, ::2, ::2].to(device)
            logits = model(images)
            if logits.shape[-2:] != labels.shape[-2:]:
                logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
            loss = loss_fn(logits, labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item()
        if epoch == 0 or (epoch + 1) % 10 == 0 or epoch + 1 == epochs:
            print(f"  {label}epoch {epoch + 1}/{epochs}: loss {total / steps:.3f} "
                  f"({time.perf_counter() - started:.1f} s)", flush=True)


@torch.inference_mode()
def predict(model: torch.nn.Module, scenes: Scenes, indices: list[int], batch_size: int,
            writer: PredictionWriter, device: torch.device, fold: int, confusion: np.ndarray,
            ignore_index: int) -> None:
    """Write the softmax of every held-out image into the store, batch by batch, at its mask's size.

    The model's logits (at whatever resolution it makes them, averaged with those of the
    flipped image) are resized bilinearly to the mask's size and the softmax is taken there,
    in float32 (a float16 softmax is coarse).
    """
    model.eval()
    n_classes = confusion.shape[0]
    for start in range(0, len(indices), batch_size):
        batch = indices[start:start + batch_size]
        images, labels = scenes.batch(batch)
        images = images.to(device, memory_format=LAYOUT)
        logits = ((model(images) + model(images.flip(-1)).flip(-1)) / 2).float()    # (B, K, h, w)
        for n, index in enumerate(batch):
            size = scenes.mask_sizes[index]
            one = logits[n:n + 1]
            if one.shape[-2:] != size:
                one = F.interpolate(one, size=size, mode="bilinear", align_corners=False)
            writer.write(scenes.ids[index], one.softmax(dim=1)[0], fold=fold)    # checked, stored as float16
            # out-of-fold accuracy against the masks as given (at the training size)
            truth = labels[n]
            if one.shape[-2:] != truth.shape:
                one = F.interpolate(logits[n:n + 1], size=truth.shape, mode="bilinear", align_corners=False)
            predicted, truth = one[0].argmax(0).cpu().numpy().ravel(), truth.numpy().ravel()
            keep = (truth != ignore_index) & (truth >= 0) & (truth < n_classes)
            confusion += np.bincount(truth[keep] * n_classes + predicted[keep],
                                     minlength=n_classes**2).reshape(n_classes, n_classes)


def train_fold(job: dict) -> tuple[int, dict]:
    """Train fold ``job["fold"]``'s model on the other folds' images; return (fold, its weights).

    A plain function of plain values, so that ``--jobs`` worker processes can run it.
    """
    torch.set_num_threads(job["threads"])
    scenes, fold, n_classes, ignore_index = job["scenes"], job["fold"], job["n_classes"], job["ignore_index"]
    print(f"fold {fold}: training on {len(job['train'])}, predicting {job['held_out']}", flush=True)
    torch.manual_seed(job["seed"] + fold)
    model = make_model(n_classes, job["model"], job["pretrained_backbone"]).to(job["device"], memory_format=LAYOUT)
    weight = class_weights(scenes, job["train"], n_classes, ignore_index, job["balance"])
    train(model, scenes, job["train"], job["epochs"], job["batch_size"], job["device"], ignore_index, weight,
          job["lr"], seed=job["seed"] + fold, label=f"fold {fold} ")
    return fold, {name: value.cpu() for name, value in model.state_dict().items()}


def mean_iou(confusion: np.ndarray) -> float:
    """Mean IoU over the classes present in the masks or the predictions."""
    inter = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - inter
    return float(np.mean(inter[union > 0] / union[union > 0])) if (union > 0).any() else float("nan")


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or 0 in (int(match[1]), int(match[2])):
        raise SystemExit(f"error: --size {text!r}: expected HxW, e.g. 180x240")
    return int(match[1]), int(match[2])


def load_folds(spec: str, dataset_masks: Path, mask_suffix: str, seed: int, ignore_index: int) -> dict[str, int]:
    """image id -> fold, from a table (``segaudit folds``) or made here for k = ``spec``."""
    from segaudit.errors import InputError
    from segaudit.io.folds import make_folds, read_folds

    try:
        if re.fullmatch(r"\d+", spec) and not Path(spec).is_file():
            return make_folds(dataset_masks, int(spec), seed=seed, mask_suffix=mask_suffix,
                              ignore_index=(ignore_index,))
        return read_folds(spec)
    except InputError as exc:
        raise SystemExit(f"error: {exc}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True, help="directory of input images (same ids as the masks)")
    parser.add_argument("--masks", type=Path, required=True, help="directory of annotation masks (what segaudit scores)")
    parser.add_argument("--mask-suffix", default="", help="as for segaudit score, e.g. _gtFine_labelIds")
    parser.add_argument("--classes", required=True,
                        help="number of classes K, or a file with one class name per line")
    parser.add_argument("--ignore-index", type=int, default=255,
                        help="mask value that is no class (default 255; CamVid's void is 11): left out of the loss")
    parser.add_argument("--label-map", default=None,
                        help="translate mask values to classes, as segaudit score --label-map (cityscapes, ade20k, "
                             "coco-stuff, or a JSON/CSV file); values it ignores become --ignore-index")
    parser.add_argument("--size", default=None, metavar="HxW",
                        help="train and predict at this size (e.g. 180x240); probabilities are written at each "
                             "mask's own size. Needed when images differ in size")
    parser.add_argument("--folds", default="5",
                        help="a table from 'segaudit folds' (image,fold; only its images are used), or k (default 5)")
    parser.add_argument("--epochs", type=int, default=60, help="training epochs per fold (default 60)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per step (default 4: more steps learn faster on a CPU); 1 if the images differ in size and no --size")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--balance", type=float, default=0.5,
                        help="class k's loss weight is (mean frequency / frequency of k) ** balance (0 = plain "
                             "cross-entropy; higher favours thin, rare classes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", choices=("stem-unet", "tiny", "deeplabv3"), default="stem-unet",
                        help="stem-unet (default: learns on a CPU, torch only), tiny (a smoke test) or deeplabv3 "
                             "(torchvision, for a GPU)")
    parser.add_argument("--pretrained-backbone", action="store_true",
                        help="start DeepLabV3 from ImageNet backbone weights (downloaded: needs network access)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="folds trained at once, each in its own process (default: on a CPU, as many as there "
                             "are cores and folds; 1 on a GPU). Separate processes use the cores better than "
                             "threads for a model this small")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per job (default: the cores divided among the jobs)")
    parser.add_argument("-o", "--output", type=Path, default=Path("preds.zarr"))
    args = parser.parse_args()

    started = time.perf_counter()
    # SIGTERM unwinds like Ctrl-C: the store is marked incomplete and the fold processes are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if Path(args.classes).is_file():
        names = [line.strip() for line in Path(args.classes).read_text().splitlines() if line.strip()]
    else:
        names = None
    n_classes = len(names) if names else int(args.classes)
    lookup = None
    if args.label_map is not None:
        from segaudit.errors import InputError
        from segaudit.io.label_maps import load_label_map

        try:
            lookup = load_label_map(args.label_map).lookup(n_classes, (args.ignore_index,))
        except InputError as exc:
            raise SystemExit(f"error: {exc}") from None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    folds_of = load_folds(args.folds, args.masks, args.mask_suffix, args.seed, args.ignore_index)
    scenes = Scenes(args.images, args.masks, args.mask_suffix, parse_size(args.size), lookup, only=set(folds_of))
    missing = sorted(set(folds_of) - set(scenes.ids))
    if missing:
        raise SystemExit(f"error: {len(missing)} image(s) of --folds {args.folds} have no mask in {args.masks}: "
                         f"{', '.join(missing[:3])}")
    left_out = len(find_masks(args.masks, args.mask_suffix)) - len(scenes)
    if left_out:
        print(f"note: {left_out} mask(s) not in --folds {args.folds} are left out", flush=True)
    if args.batch_size > 1 and len({photo.shape for photo in scenes.photos}) > 1:
        raise SystemExit("error: the images differ in size: pass --size HxW (or --batch-size 1)")
    fold_ids = sorted(set(folds_of.values()))
    members = {fold: [n for n, image_id in enumerate(scenes.ids) if folds_of[image_id] == fold] for fold in fold_ids}
    jobs = max(1, min(args.jobs or (1 if device.type == "cuda" else cores), len(fold_ids)))
    threads = args.threads or max(1, cores // jobs)
    torch.set_num_threads(threads)
    print(f"{len(scenes)} images, {len(fold_ids)} folds, K={n_classes}, on {device} "
          f"({jobs} job(s) of {threads} thread(s)), loaded in {time.perf_counter() - started:.1f} s", flush=True)
    confusion = np.zeros((n_classes, n_classes), np.int64)
    fold_jobs = [{"fold": fold, "scenes": scenes, "n_classes": n_classes, "ignore_index": args.ignore_index,
                  "train": [n for other in fold_ids if other != fold for n in members[other]],
                  "held_out": len(members[fold]), "threads": threads, "seed": args.seed, "model": args.model,
                  "pretrained_backbone": args.pretrained_backbone, "device": device, "balance": args.balance,
                  "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr} for fold in fold_ids]

    # One writer for all folds: each image is written once, by the model that did not see it,
    # and its array records that model's fold. With several jobs, a fold is predicted (here)
    # as soon as its model is trained (there).
    with PredictionWriter(args.output, classes=names, dtype="float16") as writer:
        if jobs == 1:
            trained = map(train_fold, fold_jobs)
        else:
            pool = torch.multiprocessing.get_context("spawn").Pool(jobs)
            trained = pool.imap_unordered(train_fold, fold_jobs)
        try:
            for fold, weights in trained:
                model = make_model(n_classes, args.model).to(device, memory_format=LAYOUT)
                model.load_state_dict(weights)
                predict(model, scenes, members[fold], args.batch_size, writer, device, fold, confusion,
                        args.ignore_index)
        finally:
            if jobs > 1:
                pool.terminate()
                pool.join()
    print(f"out-of-fold mIoU against the masks: {mean_iou(confusion):.3f}, pixel accuracy "
          f"{np.trace(confusion) / max(confusion.sum(), 1):.3f}")
    print(f"wrote {args.output} ({writer.images_written} images) in {time.perf_counter() - started:.0f} s; next: "
          f"segaudit score {args.masks} {args.output} --folds <folds table> --ignore-index {args.ignore_index}")


if __name__ == "__main__":
    main()
