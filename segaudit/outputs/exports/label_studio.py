"""Label Studio: a tasks JSON whose pre-annotations are the current mask and the proposed fix.

One task per image (``data.image`` from ``--image-url``; ``data.segaudit`` holds the id,
rank, score and suspect regions), with two predictions, ``segaudit current mask`` and
``segaudit proposed fix``, each one ``brushlabels`` result per class present, in Label
Studio's brush RLE (what label-studio-converter's ``brush.encode_rle`` writes and
``brush.decode_rle`` reads: an RGBA image flattened row-major, 255 on every channel of
a brushed pixel). A labeling config with the classes' ``BrushLabels`` is written beside
(``<stem>.label_config.xml``), to paste into the project's settings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from ..colours import class_colours
from .base import ExportContext, ExportImage, Exporter, ExportWriter

#: The RLE's word size and its four run-length field widths, as the converter writes them.
WORD_SIZE = 8
RLE_SIZES = (3, 4, 8, 16)
FROM_NAME, TO_NAME = "label", "image"


def _run_bits(length: int, value: int) -> str:
    """One run of ``length`` equal values (split into runs of at most 2**16)."""
    parts = []
    while length > 0:
        chunk = min(length, 1 << 16)
        for index, width in enumerate(RLE_SIZES):
            if chunk <= 1 << width:
                break
        parts.append(f"1{index:02b}{chunk - 1:0{width}b}{value:0{WORD_SIZE}b}")
        length -= chunk
    return "".join(parts)


def brush_rle(mask: np.ndarray) -> list[int]:
    """A boolean (H, W) mask in Label Studio's brush RLE (a list of byte values).

    The encoded array is the mask as RGBA, row-major (``H * W * 4`` values, 255 on every
    channel of a masked pixel, 0 elsewhere), as label-studio-converter's ``mask2rle``;
    every run is written as a series (the decoder reads a series of one as well).
    """
    flat = np.asarray(mask, bool).ravel()
    num = flat.size * 4
    bits = [f"{num:032b}", f"{WORD_SIZE - 1:05b}", "".join(f"{size - 1:04b}" for size in RLE_SIZES)]
    if flat.size:
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        starts = np.concatenate(([0], change))
        lengths = np.diff(np.concatenate((starts, [flat.size]))) * 4
        bits.extend(_run_bits(int(n), 255 if flat[s] else 0) for s, n in zip(starts, lengths))
    text = "".join(bits)
    text += "0" * (-len(text) % 8)
    return np.packbits(np.frombuffer(text.encode("ascii"), np.uint8) - 48).tolist()


class _LabelStudioWriter(ExportWriter):
    def __init__(self, context: ExportContext):
        self.context = context
        self.tasks: list[tuple[int, str, dict]] = []  # (rank, id, task)

    def _brushes(self, labels: np.ndarray, prefix: str) -> list[dict]:
        known = self.context.class_pixels(labels)
        results = []
        for k in np.unique(labels[known]).tolist():
            results.append({
                "id": f"{prefix}{k}", "from_name": FROM_NAME, "to_name": TO_NAME, "type": "brushlabels",
                "original_width": int(labels.shape[1]), "original_height": int(labels.shape[0]),
                "image_rotation": 0,
                "value": {"format": "rle", "rle": brush_rle(labels == k), "brushlabels": [self.context.classes[k]]},
            })
        return results

    def add(self, image: ExportImage) -> None:
        classes = self.context.classes
        regions = [{"region": r.region.region, "score": r.region.score, "kind": r.region.kind,
                    "annotated_class": classes[r.region.annotated_class], "likely_class": classes[r.region.likely_class],
                    "bbox": [r.region.x0, r.region.y0, r.region.x1, r.region.y1], "decision": r.decision}
                   for r in image.regions]
        self.tasks.append((image.rank, image.image_id, {
            "data": {"image": self.context.url(image.image_id),
                     "segaudit": {"image": image.image_id, "rank": image.rank,
                                  "score": None if math.isnan(image.score) else image.score,
                                  "decision": image.decision, "regions": regions}},
            "predictions": [
                {"model_version": "segaudit current mask", "result": self._brushes(image.labels, f"{image.image_id}:mask:")},
                {"model_version": "segaudit proposed fix",
                 "score": max((r.region.score for r in image.regions), default=0.0),
                 "result": self._brushes(image.proposal, f"{image.image_id}:fix:")},
            ],
        }))

    def label_config(self) -> str:
        colours = class_colours(self.context.n_classes, list(self.context.classes)).table
        labels = "".join(f'    <Label value={quoteattr(name)} background="#{r:02x}{g:02x}{b:02x}"/>\n'
                         for name, (r, g, b) in zip(self.context.classes, colours.tolist()))
        return (f'<View>\n  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
                f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">\n{labels}  </BrushLabels>\n</View>\n')

    def files(self, out: Path) -> dict[Path, str]:
        tasks = [task for _, _, task in sorted(self.tasks, key=lambda t: t[:2])]
        return {out: json.dumps(tasks, allow_nan=False) + "\n", label_config_path(out): self.label_config()}


def label_config_path(out: Path) -> Path:
    """The labeling config written beside the tasks file ``out``."""
    stem = out.name[: -len(".json")] if out.name.endswith(".json") else out.name
    return out.with_name(stem + ".label_config.xml")


EXPORTER = Exporter(name="label-studio", description="Label Studio tasks JSON: current mask and proposed fix as brush labels",
                    default_output="tasks.json", start=_LabelStudioWriter, beside=lambda out: [label_config_path(out)])
