"""COCO: the suspect regions as RLE segments, their likely class as category, their score.

One JSON document (``images``, ``categories``, ``annotations``), readable by pycocotools
and every COCO tool. Each annotation is one region: ``segmentation`` is compressed RLE
(``{"size": [H, W], "counts": "..."}``, column-major, the string encoding of pycocotools'
``rleToString``), ``category_id`` its likely class (class index + 1, COCO ids start at 1),
``score`` the region's score, ``bbox`` ``[x, y, width, height]`` and ``area`` its pixels;
``segaudit`` carries the region number, kind, annotated class and the image's rank.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .base import ExportContext, ExportImage, Exporter, ExportWriter


def rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts of a boolean (H, W) mask: run lengths in column-major
    order, the first run of zeros (possibly empty)."""
    flat = np.asarray(mask, bool).ravel(order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds).tolist()
    return [0, *counts] if flat[0] else counts


def rle_string(counts: list[int]) -> str:
    """The compressed string of RLE counts, as pycocotools' ``rleToString``: each count
    (from the third on, less the count two before it) in 5-bit groups, low first, a
    continuation bit 0x20, offset by 48."""
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: negative deltas end at -1
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def encode(mask: np.ndarray) -> dict:
    """A boolean (H, W) mask as a compressed COCO RLE object."""
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": rle_string(rle_counts(mask))}


class _CocoWriter(ExportWriter):
    def __init__(self, context: ExportContext):
        self.context = context
        self.images: list[tuple[int, str, dict, list[dict]]] = []  # (rank, id, image, its annotations)

    def add(self, image: ExportImage) -> None:
        entry = {"id": 0, "file_name": self.context.url(image.image_id), "width": image.width,
                 "height": image.height, "segaudit": {"image": image.image_id, "rank": image.rank,
                                                      "score": None if math.isnan(image.score) else image.score}}
        annotations = []
        for item in image.regions:
            region = item.region
            ys, xs = np.nonzero(item.pixels)
            x0, y0 = int(xs.min()), int(ys.min())
            annotations.append({
                "id": 0, "image_id": 0,
                "category_id": region.likely_class + 1, "segmentation": encode(item.pixels),
                "area": int(ys.size), "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0],
                "iscrowd": 0, "score": region.score,
                "segaudit": {"region": region.region, "kind": region.kind,
                             "annotated_class": self.context.classes[region.annotated_class],
                             "likely_class": self.context.classes[region.likely_class],
                             "decision": item.decision},
            })
        self.images.append((image.rank, image.image_id, entry, annotations))

    def files(self, out: Path) -> dict[Path, str]:
        images, annotations = [], []
        for number, (_, _, entry, theirs) in enumerate(sorted(self.images, key=lambda i: i[:2]), 1):
            images.append(dict(entry, id=number))
            annotations += [dict(a, id=len(annotations) + k, image_id=number) for k, a in enumerate(theirs, 1)]
        document = {
            "info": {"description": f"segaudit suspect regions from {self.context.ranking.name}",
                     "min_score": self.context.min_score},
            "images": images,
            "categories": [{"id": k + 1, "name": name, "supercategory": ""}
                           for k, name in enumerate(self.context.classes)],
            "annotations": annotations,
        }
        return {out: json.dumps(document, indent=1, allow_nan=False) + "\n"}


EXPORTER = Exporter(name="coco", description="COCO JSON: regions as RLE segments, likely class, score",
                    default_output="regions.coco.json", start=_CocoWriter)
