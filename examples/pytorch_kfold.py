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
reached the mIoU given in docs/predictions.md. ``--model tiny`` is a few convolutions (for
a smoke test). ``--model deeplabv3`` is torchvision's DeepLabV3-MobileNetV3 (random weights;
``--pretrained-backbone`` downloads ImageNet ones) for a GPU. torch is not a segaudit
dependency (``pip install torch --index-url https://download.pytorch.org/whl/cpu`` gets the
small CPU wheel). ``make_model`` and ``train`` are deliberately plain; replace them with
your own. The part that matters for segaudit is ``predict`` and the loop in ``main``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

sys.path.insert(0, str(Path(__file__).resolve().parent))  # stem_unet.py, beside this file

from segaudit import PredictionWriter  # noqa: E402
from segaudit.io.masks import find_masks, read_mask  # noqa: E402

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


class SegmentationImages(Dataset):
    """(image tensor, label tensor, image id, mask size) for every mask that has an image.

    ``size`` (H, W): photos are resized bilinearly and labels by nearest neighbour.
    ``lookup`` (a segaudit label map's lookup) translates mask values into class indices,
    ignored values becoming ``ignore_index``. Decoded items are kept in memory
    (``cache``): a small dataset is then decoded once, not once per epoch.
    """

    def __init__(self, images: Path, masks: Path, mask_suffix: str = "", size: tuple[int, int] | None = None,
                 lookup=None, only: set[str] | None = None, cache: bool = True):
        self.items = []
        for mask in find_masks(masks, mask_suffix):
            if only is not None and mask.image_id not in only:
                continue
            candidates = [images / f"{mask.image_id}{suffix}" for suffix in IMAGE_SUFFIXES]
            image = next((path for path in candidates if path.is_file()), None)
            if image is None:
                raise SystemExit(f"error: no image for mask {mask.path} (looked for {candidates[0]} etc.)")
            self.items.append((mask, image))
        self.size, self.lookup = size, lookup
        self.cache: dict[int, tuple] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        mask, image_path = self.items[index]
        labels = read_mask(mask, label_map=self.lookup)
        photo = Image.open(image_path).convert("RGB")
        mask_size = labels.shape
        if self.size is not None:
            photo = photo.resize(self.size[::-1], Image.BILINEAR)
            labels = np.asarray(Image.fromarray(labels).resize(self.size[::-1], Image.NEAREST))
        elif photo.size != mask_size[::-1]:
            raise SystemExit(f"error: {image_path} is {photo.size[0]}x{photo.size[1]} (WxH) but its mask is "
                             f"{mask_size[1]}x{mask_size[0]}: pass --size HxW")
        rgb = np.asarray(photo, dtype=np.float32) / 255
        image = (torch.from_numpy(rgb).permute(2, 0, 1) - MEAN) / STD
        item = (image, torch.from_numpy(labels.astype(np.int64)), mask.image_id, torch.tensor(mask_size))
        if self.cache is not None:
            self.cache[index] = item
        return item


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
    """A segmentation network returning (B, K, H, W) logits.

    ``stem-unet`` (:class:`stem_unet.StemUNet`: stride 4, channels 16-128, torch only),
    ``tiny`` (:class:`TinySegmenter`) or ``deeplabv3`` (torchvision's DeepLabV3-MobileNetV3;
    random weights unless ``pretrained_backbone``, which downloads them).
    """
    if kind == "stem-unet":
        from stem_unet import StemUNet

        return StemUNet(n_classes, widths=(16, 32, 64, 128), stride=4)
    if kind == "tiny":
        return TinySegmenter(n_classes)
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    return _LogitsOnly(deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone="DEFAULT" if pretrained_backbone else None, num_classes=n_classes))


def class_weights(dataset: Dataset, n_classes: int, ignore_index: int, power: float = 0.5) -> torch.Tensor:
    """(mean frequency / frequency of k) ** power: thin classes (poles, signs, people) are learnt at all."""
    counts = torch.zeros(n_classes, dtype=torch.float64)
    for index in range(len(dataset)):
        labels = dataset[index][1]
        labels = labels[(labels != ignore_index) & (labels < n_classes)]
        counts += torch.bincount(labels.flatten(), minlength=n_classes)[:n_classes].double()
    frequency = counts.clamp(min=1) / counts.sum().clamp(min=1)
    return ((frequency.mean() / frequency) ** power).float()


def train(model: torch.nn.Module, loader: DataLoader, epochs: int, device: torch.device, ignore_index: int,
          weight: torch.Tensor | None = None, lr: float = 3e-3) -> None:
    """Cross-entropy (class-weighted), AdamW with a one-cycle schedule, horizontal flips."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=max(1, epochs * len(loader)),
                                                   pct_start=0.2)
    loss_fn = torch.nn.CrossEntropyLoss(weight=None if weight is None else weight.to(device),
                                        ignore_index=ignore_index)
    model.train()
    for epoch in range(epochs):
        started, total, seen = time.perf_counter(), 0.0, 0
        for images, labels, _, _ in loader:
            images, labels = images.to(device), labels.to(device)
            flip = torch.rand(len(images)) < 0.5
            images = torch.where(flip[:, None, None, None].to(device), images.flip(-1), images)
            labels = torch.where(flip[:, None, None].to(device), labels.flip(-1), labels)
            loss = loss_fn(model(images), labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total, seen = total + loss.item() * len(images), seen + len(images)
        if epoch == 0 or (epoch + 1) % 5 == 0 or epoch + 1 == epochs:
            print(f"  epoch {epoch + 1}/{epochs}: loss {total / max(seen, 1):.3f} "
                  f"({time.perf_counter() - started:.1f} s)", flush=True)


@torch.inference_mode()
def predict(model: torch.nn.Module, loader: DataLoader, writer: PredictionWriter, device: torch.device,
            fold: int, confusion: np.ndarray, ignore_index: int) -> None:
    """Write the softmax of every held-out image into the store, batch by batch, at its mask's size.

    The logits (averaged with those of the flipped image) are resized bilinearly to the mask's
    size and the softmax is taken there, in float32 (a float16 softmax is coarse).
    """
    model.eval()
    n_classes = confusion.shape[0]
    for images, labels, image_ids, mask_sizes in loader:
        images = images.to(device)
        logits = (model(images) + model(images.flip(-1)).flip(-1)) / 2           # (B, K, h, w)
        for n, image_id in enumerate(image_ids):
            size = tuple(int(v) for v in mask_sizes[n])
            one = logits[n:n + 1].float()
            if one.shape[-2:] != size:
                one = F.interpolate(one, size=size, mode="bilinear", align_corners=False)
            probs = one.softmax(dim=1)[0]                                         # (K, H, W) at mask size
            writer.write(image_id, probs, fold=fold)                              # checked, stored as float16
            # out-of-fold accuracy against the masks as given (at the training size)
            small = logits[n].argmax(0).cpu().numpy().ravel()
            truth = labels[n].numpy().ravel()
            keep = (truth != ignore_index) & (truth < n_classes)
            confusion += np.bincount(truth[keep] * n_classes + small[keep],
                                     minlength=n_classes**2).reshape(n_classes, n_classes)


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
    parser.add_argument("--epochs", type=int, default=40, help="training epochs per fold (default 40)")
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
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (0 = in the main process)")
    parser.add_argument("--no-cache", action="store_true", help="decode the images every epoch instead of keeping "
                                                                "them in memory (for datasets larger than memory)")
    parser.add_argument("-o", "--output", type=Path, default=Path("preds.zarr"))
    args = parser.parse_args()

    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
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
    folds_of = load_folds(args.folds, args.masks, args.mask_suffix, args.seed, args.ignore_index)
    dataset = SegmentationImages(args.images, args.masks, args.mask_suffix, parse_size(args.size), lookup,
                                 only=set(folds_of), cache=not args.no_cache and args.workers == 0)
    found = {mask.image_id for mask, _ in dataset.items}
    missing = sorted(set(folds_of) - found)
    if missing:
        raise SystemExit(f"error: {len(missing)} image(s) of --folds {args.folds} have no mask in {args.masks}: "
                         f"{', '.join(missing[:3])}")
    left_out = len(find_masks(args.masks, args.mask_suffix)) - len(dataset)
    if left_out:
        print(f"note: {left_out} mask(s) not in --folds {args.folds} are left out", flush=True)
    fold_ids = sorted(set(folds_of.values()))
    members = {fold: [n for n, (mask, _) in enumerate(dataset.items) if folds_of[mask.image_id] == fold]
               for fold in fold_ids}
    print(f"{len(dataset)} images, {len(fold_ids)} folds, K={n_classes}, on {device} "
          f"({torch.get_num_threads()} threads)", flush=True)
    confusion = np.zeros((n_classes, n_classes), np.int64)

    # One writer for all folds: each image is written once, by the model that did not see it,
    # and its array records that model's fold.
    with PredictionWriter(args.output, classes=names, dtype="float16") as writer:
        for fold in fold_ids:
            held_out = members[fold]
            train_indices = [n for other in fold_ids if other != fold for n in members[other]]
            print(f"fold {fold}: training on {len(train_indices)}, predicting {len(held_out)}", flush=True)
            torch.manual_seed(args.seed + fold)
            model = make_model(n_classes, args.model, args.pretrained_backbone).to(device)
            training = Subset(dataset, train_indices)
            train(model, DataLoader(training, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                                    drop_last=len(train_indices) > args.batch_size),
                  args.epochs, device, args.ignore_index, class_weights(training, n_classes, args.ignore_index, args.balance),
                  args.lr)
            predict(model, DataLoader(Subset(dataset, held_out), batch_size=args.batch_size,
                                      num_workers=args.workers), writer, device, fold, confusion, args.ignore_index)
    print(f"out-of-fold mIoU against the masks: {mean_iou(confusion):.3f}, pixel accuracy "
          f"{np.trace(confusion) / max(confusion.sum(), 1):.3f}")
    print(f"wrote {args.output} ({writer.images_written} images) in {time.perf_counter() - started:.0f} s; next: "
          f"segaudit score {args.masks} {args.output} --folds <folds table> --ignore-index {args.ignore_index}")


if __name__ == "__main__":
    main()
