"""Out-of-sample predictions for segaudit, from a PyTorch model trained with k-fold cross-validation.

segaudit needs each image's predicted class probabilities from a model that did NOT train
on that image: a model that saw an image's label has learned its mistakes too, and then it
agrees with them. K-fold cross-validation gives every image such a prediction: split the
images into k folds, and for each fold train on the other k-1 and predict the held-out one.

    python examples/pytorch_kfold.py --images images/ --masks masks/ --classes 19 -o preds.zarr
    python examples/pytorch_kfold.py ... --model tiny --folds 2 --epochs 1   # a quick try, torch only
    segaudit info preds.zarr
    segaudit score masks/ preds.zarr -o ranking.csv

- ``--masks`` is the masks directory segaudit scores; image ids are its relative paths
  without extension, and the image of id ``city/a`` is ``images/city/a.<png|jpg|...>``.
- The predictions go straight from the GPU into the store through ``PredictionWriter``, one
  batch at a time (memory stays at one batch), stored as float16, checked as they are
  written. If the script dies mid-way, the store is marked incomplete and ``segaudit
  score`` refuses it with a message saying so, instead of scoring half a dataset.

It runs offline: the default model, torchvision's DeepLabV3 (MobileNetV3), starts from
random weights; ``--pretrained-backbone`` downloads ImageNet backbone weights instead (needs
network access once). ``--model tiny`` is a few plain convolutions that need torch alone
(the test suite runs it on tiny data when torch is installed). torch and torchvision
(``pip install torch torchvision``) are not segaudit dependencies. ``make_model`` and
``train`` are deliberately plain; replace them with your own. The part that matters for
segaudit is ``predict`` and the loop in ``main``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from segaudit import PredictionWriter
from segaudit.io.masks import find_masks, read_mask

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


class SegmentationImages(Dataset):
    """(image tensor, label tensor, image id) for every mask that has an image."""

    def __init__(self, images: Path, masks: Path, mask_suffix: str = ""):
        self.items = []
        for mask in find_masks(masks, mask_suffix):
            candidates = [images / f"{mask.image_id}{suffix}" for suffix in IMAGE_SUFFIXES]
            image = next((path for path in candidates if path.is_file()), None)
            if image is None:
                raise FileNotFoundError(f"no image for mask {mask.path} (looked for {candidates[0]} etc.)")
            self.items.append((mask, image))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        mask, image_path = self.items[index]
        rgb = np.asarray(Image.open(image_path).convert("RGB"), dtype=np.float32) / 255
        image = (torch.from_numpy(rgb).permute(2, 0, 1) - MEAN) / STD
        labels = torch.from_numpy(read_mask(mask).astype(np.int64))
        return image, labels, mask.image_id


class TinySegmenter(torch.nn.Module):
    """A few convolutions: enough to run the pipeline end to end, not to find errors."""

    def __init__(self, n_classes: int, width: int = 16):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(width, n_classes, 1),
        )

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.body(images)}  # the key torchvision's segmentation models use


def make_model(n_classes: int, kind: str = "deeplabv3", pretrained_backbone: bool = False) -> torch.nn.Module:
    """``deeplabv3`` (torchvision; random weights unless ``pretrained_backbone``, which
    downloads them) or ``tiny`` (:class:`TinySegmenter`, torch only)."""
    if kind == "tiny":
        return TinySegmenter(n_classes)
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    return deeplabv3_mobilenet_v3_large(weights=None, weights_backbone="DEFAULT" if pretrained_backbone else None,
                                        num_classes=n_classes)


def train(model: torch.nn.Module, loader: DataLoader, epochs: int, device: torch.device) -> None:
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-4)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
    model.train()
    for epoch in range(epochs):
        for images, labels, _ in loader:
            images, labels = images.to(device), labels.to(device)
            loss = loss_fn(model(images)["out"], labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        print(f"  epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}", flush=True)


@torch.inference_mode()
def predict(model: torch.nn.Module, loader: DataLoader, writer: PredictionWriter, device: torch.device) -> None:
    """Write the softmax of every held-out image into the store, batch by batch."""
    model.eval()
    for images, _, image_ids in loader:
        logits = model(images.to(device))["out"]          # (B, K, H, W)
        probs = logits.float().softmax(dim=1)             # in float32: float16 softmax is coarse
        writer.write_batch(list(image_ids), probs)        # moved to the CPU, checked, stored as float16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True, help="directory of input images (same ids as the masks)")
    parser.add_argument("--masks", type=Path, required=True, help="directory of annotation PNGs (what segaudit scores)")
    parser.add_argument("--mask-suffix", default="", help="as for segaudit score, e.g. _gtFine_labelIds")
    parser.add_argument("--classes", required=True,
                        help="number of classes K, or a file with one class name per line")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8, help="use 1 if the images differ in size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", choices=("deeplabv3", "tiny"), default="deeplabv3",
                        help="torchvision's DeepLabV3-MobileNetV3, or a tiny conv net (torch only, for a quick try)")
    parser.add_argument("--pretrained-backbone", action="store_true",
                        help="start DeepLabV3 from ImageNet backbone weights (downloaded: needs network access)")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader worker processes (0 = in the main process)")
    parser.add_argument("-o", "--output", type=Path, default=Path("preds.zarr"))
    args = parser.parse_args()

    if Path(args.classes).is_file():
        names = [line.strip() for line in Path(args.classes).read_text().splitlines() if line.strip()]
    else:
        names = None
    n_classes = len(names) if names else int(args.classes)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    dataset = SegmentationImages(args.images, args.masks, args.mask_suffix)
    order = np.random.default_rng(args.seed).permutation(len(dataset))
    folds = np.array_split(order, args.folds)
    print(f"{len(dataset)} images, {args.folds} folds, K={n_classes}, on {device}")

    # One writer for all folds: each image is written once, by the model that did not see it.
    with PredictionWriter(args.output, classes=names, dtype="float16") as writer:
        for fold, held_out in enumerate(folds):
            train_indices = np.concatenate([f for n, f in enumerate(folds) if n != fold])
            print(f"fold {fold + 1}/{args.folds}: training on {len(train_indices)}, predicting {len(held_out)}")
            torch.manual_seed(args.seed + fold)
            model = make_model(n_classes, args.model, args.pretrained_backbone).to(device)
            train(model, DataLoader(Subset(dataset, train_indices.tolist()), batch_size=args.batch_size,
                                    shuffle=True, num_workers=args.workers, drop_last=len(train_indices) > args.batch_size),
                  args.epochs, device)
            predict(model, DataLoader(Subset(dataset, held_out.tolist()), batch_size=args.batch_size,
                                      num_workers=args.workers), writer, device)
    print(f"wrote {args.output} ({writer.images_written} images); next: segaudit score {args.masks} {args.output}")


if __name__ == "__main__":
    main()
