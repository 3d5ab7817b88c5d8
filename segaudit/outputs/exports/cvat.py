"""CVAT: a "Segmentation mask 1.1" archive of the current masks, suspect regions as a label.

The zip CVAT imports for masks (Upload annotations, format "Segmentation mask 1.1"; the
Pascal VOC segmentation layout, read by Datumaro's ``voc_segmentation`` importer):

- ``labelmap.txt``: ``name:r,g,b::`` per label: ``background`` (0,0,0: ignored pixels),
  every class, and :data:`SUSPECT_LABEL`;
- ``SegmentationClass/<id>.png``: the current mask as an RGB colour mask, the suspect
  regions' pixels painted in the suspect label's colour;
- ``ImageSets/Segmentation/default.txt``: the image ids, one a line.

A class named ``background`` takes the black of the ignored pixels (they merge into it).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import InputError
from ...io.files import safe_relative_path
from ..colours import distinct_colours
from .base import ExportContext, ExportImage, Exporter, ExportWriter

SUSPECT_LABEL = "segaudit_suspect"
BACKGROUND = "background"
SUSPECT_COLOUR = (255, 0, 255)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same export gives the same bytes


def label_colours(classes: tuple[str, ...]) -> tuple[list[tuple[int, int, int]], tuple[int, int, int]]:
    """Distinct colours for the classes (none black, but a class named ``background``) and
    the suspect label's colour."""
    used = {(0, 0, 0)}
    spare = iter(c for c in distinct_colours(len(classes) + 64) if c != SUSPECT_COLOUR)
    colours = []
    for name in classes:
        if name == BACKGROUND:
            colours.append((0, 0, 0))
            continue
        colour = next(c for c in spare if c not in used)
        used.add(colour)
        colours.append(colour)
    suspect = SUSPECT_COLOUR if SUSPECT_COLOUR not in used else next(c for c in spare if c not in used)
    return colours, suspect


class _CvatWriter(ExportWriter):
    def __init__(self, context: ExportContext):
        for name in context.classes:
            if ":" in name or "\n" in name or "\r" in name or not name.strip():
                raise InputError(f"class name {name!r} cannot be written to a CVAT label map (no ':' or line "
                                 "break, not empty): rename it with --classes when scoring")
        if SUSPECT_LABEL in context.classes:
            raise InputError(f"a class is named {SUSPECT_LABEL!r}, the label of the suspect regions")
        self.context = context
        self.colours, self.suspect = label_colours(context.classes)
        self.table = np.array([*self.colours, (0, 0, 0)], np.uint8)  # the last row: ignored pixels
        self.masks: list[tuple[int, str, bytes]] = []  # (rank, id, PNG)

    def add(self, image: ExportImage) -> None:
        if "\n" in image.image_id or "\r" in image.image_id:  # the image list is one id a line
            raise InputError(f"image id {image.image_id!r} holds a line break: CVAT's image list "
                             "(ImageSets/Segmentation/default.txt) has one id a line; rename its mask")
        labels = image.labels
        index = np.where(self.context.class_pixels(labels), labels, self.context.n_classes)
        rgb = self.table[index]
        for region in image.regions:
            rgb[region.pixels] = self.suspect
        buffer = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(buffer, format="PNG")
        self.masks.append((image.rank, image.image_id, buffer.getvalue()))

    def label_map(self) -> str:
        lines = ["# label:color_rgb:parts:actions"]
        if BACKGROUND not in self.context.classes:
            lines.append(f"{BACKGROUND}:0,0,0::")
        lines += [f"{name}:{r},{g},{b}::" for name, (r, g, b) in zip(self.context.classes, self.colours)]
        lines.append(f"{SUSPECT_LABEL}:{self.suspect[0]},{self.suspect[1]},{self.suspect[2]}::")
        return "\n".join(lines) + "\n"

    def files(self, out: Path) -> dict[Path, bytes]:
        masks = [(image_id, data) for _, image_id, data in sorted(self.masks, key=lambda m: m[:2])]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            def put(name: str, data: bytes) -> None:
                info = zipfile.ZipInfo(name, _ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, data)

            put("labelmap.txt", self.label_map().encode("utf-8"))
            put("ImageSets/Segmentation/default.txt",
                "".join(image_id + "\n" for image_id, _ in masks).encode("utf-8"))
            for image_id, data in masks:
                put("SegmentationClass/" + safe_relative_path(image_id, ".png").as_posix(), data)
        return {out: buffer.getvalue()}


EXPORTER = Exporter(name="cvat", description="CVAT Segmentation mask 1.1 zip: current masks, suspect regions as a label",
                    default_output="cvat-masks.zip", start=_CvatWriter)
