"""After scoring: do the labels and the predictions look like the same class space?

Masks numbered in another convention than the model's classes (ADE20K's value k for class
k - 1, Cityscapes labelIds below 19, a permuted class list) score without any error, and the
ranking is garbage. The sign is structural: most labelled pixels of a value k are predicted as
one other class k', in most images that hold k, for several values at once, each to its own
k', and together they hold most of the pixels. A model that is merely bad spreads its
mistakes, or sends many labels to one class; it does not move each label to its own other
class.

:class:`ClassSpaceCheck` folds each image's accumulators in (its confusion of the labels with
the argmax: the argmax-agreeing pixels on the diagonal, the low pixels off it) and
:meth:`ClassSpaceCheck.warnings` says what it found and the fix.

A second sign needs no structure: the argmax agrees with the label on far fewer pixels than
the model's own confidence implies (the mean of p[argmax] is the accuracy a calibrated model
expects). Deep networks are overconfident by some points, and real label noise costs some
more, but predictions for other images (ids or orders mixed up) or in another class space
agree at chance level while the model stays confident. It warns only when the structural
sign does not. With ``--pixel-threshold``
below 0.5 some disagreeing pixels are not low pixels, so the check only sees fewer of them.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .kernel import BOTH, LABEL, PRED, ImageStats

#: A label value is "moved" when at least this share of its pixels, over the dataset and in
#: at least this share of the images holding it, is predicted as one other class.
MOVED_SHARE = 0.5
#: The check warns when moved values hold at least this share of the scored pixels ...
MOVED_PIXELS = 0.5
#: ... and there are at least this many of them.
MOVED_VALUES = 2
#: An offset explains the moves when one k' - k holds this share of the moved pixels.
OFFSET_SHARE = 0.9
#: The agreement warning: the pixel accuracy is below this share of the mean confidence ...
AGREEMENT_SHARE = 0.5
#: ... and at least this far below it; unless one class holds this share of the argmax (a
#: model that predicts one class everywhere is bad, not misaligned).
AGREEMENT_GAP = 0.3
ONE_CLASS_SHARE = 0.9


def _disagrees(accuracy: float, confidence: float) -> bool:
    """Pixel accuracy far below the mean confidence (see :data:`AGREEMENT_SHARE`, :data:`AGREEMENT_GAP`)."""
    return accuracy < AGREEMENT_SHARE * confidence and confidence - accuracy >= AGREEMENT_GAP


class ClassSpaceCheck:
    """Dataset-wide (label, argmax) counts, image by image; then :meth:`warnings`."""

    def __init__(self, n_classes: int):
        self.confusion = np.zeros((n_classes, n_classes), np.int64)  # [label, argmax]
        self.images_with = np.zeros(n_classes, np.int64)  # images holding label k
        self.images_moved: Counter[tuple[int, int]] = Counter()  # (k, k'): images where k is mostly k'
        self.confidence = 0.0  # sum over scored pixels of p[argmax]
        self.predicted = np.zeros(n_classes, np.int64)  # scored pixels by argmax
        self.images_scored = 0
        self.images_disagreeing = 0  # images whose own agreement is far below their confidence

    def add_image(self, stats: ImageStats) -> None:
        """Fold in one image's accumulators (in dataset order)."""
        self.add_piece(self.piece(stats))

    @staticmethod
    def piece(stats: ImageStats) -> tuple:
        """What :meth:`add_piece` needs of one image's accumulators: small and picklable,
        so that an image scored elsewhere (a Dask worker) is folded in as if scored here."""
        counts = stats.class_counts[LABEL]
        present = np.flatnonzero(counts)  # only the rows of the classes it holds: K x K is large for K = 150
        return (counts[present], present, stats.class_counts[BOTH][present], stats.class_counts[PRED].copy(),
                stats.low_confusion[present], stats.sum_confidence, stats.pixels, stats.correct)

    def add_piece(self, piece: tuple) -> None:
        """Fold in one image's :meth:`piece`, in dataset order (the sum of confidences is a float)."""
        counts, present, agreeing, predicted, low, sum_confidence, pixels, correct = piece
        self.confidence += sum_confidence
        self.predicted += predicted
        if pixels:
            self.images_scored += 1
            self.images_disagreeing += _disagrees(correct / pixels, sum_confidence / pixels)
        for n, k in enumerate(present.tolist()):
            row = low[n].copy()
            row[k] = agreeing[n]  # every agreeing pixel, low or not
            self.confusion[k] += row
            self.images_with[k] += 1
            j = int(row.argmax())
            if j != k and row[j] >= MOVED_SHARE * counts[n]:
                self.images_moved[k, j] += 1

    def moved(self) -> dict[int, int]:
        """Label value -> the one other class most of its pixels are predicted as (see module)."""
        found = {}
        pixels = self.confusion.sum(axis=1)
        for k in np.flatnonzero(pixels).tolist():
            j = int(self.confusion[k].argmax())
            if (j != k and self.confusion[k, j] >= MOVED_SHARE * pixels[k]
                    and self.images_moved[k, j] >= MOVED_SHARE * self.images_with[k]):
                found[k] = j
        return found

    def warnings(self, classes: list[str] | None = None) -> list[str]:
        """One line per problem found (none when the class spaces look the same)."""
        return self._moved_warnings(classes) or self._agreement_warnings()

    def _agreement_warnings(self) -> list[str]:
        total = int(self.confusion.sum())
        if not total:
            return []
        accuracy = float(np.trace(self.confusion)) / total
        confidence = self.confidence / total
        # Over the dataset's pixels and in most images (one odd image is not a dataset problem).
        if not _disagrees(accuracy, confidence) or self.images_disagreeing < MOVED_SHARE * self.images_scored \
                or self.predicted.max() >= ONE_CLASS_SHARE * total:
            return []
        return [f"the argmax agrees with the label on {accuracy:.0%} of the scored pixels, far fewer than the "
                f"model's own confidence implies ({confidence:.0%} on average): the predictions may be for other "
                "images (check how the ids were assigned, e.g. pack --ids/--masks order), or the labels in "
                "another class space (--label-map, --ignore-index; docs/formats.md)"]

    def _moved_warnings(self, classes: list[str] | None = None) -> list[str]:
        total = int(self.confusion.sum())
        pixels = self.confusion.sum(axis=1)
        # One value per target class: many labels predicted as one class is a bad model (or an
        # empty store), not a renumbering.
        by_target: dict[int, int] = {}
        for k, j in self.moved().items():
            if j not in by_target or pixels[k] > pixels[by_target[j]]:
                by_target[j] = k
        moved = {k: j for j, k in by_target.items()}
        moved_pixels = int(sum(pixels[k] for k in moved))
        if not total or len(moved) < MOVED_VALUES or moved_pixels < MOVED_PIXELS * total:
            return []
        accuracy = float(np.trace(self.confusion)) / total
        facts = (f"{len(moved)} label values holding {moved_pixels / total:.0%} of the scored pixels are "
                 f"each mostly predicted as one other class (pixel accuracy {accuracy:.0%})")

        def name(j: int) -> str:
            return f"class {j} ({classes[j]})" if classes else f"class {j}"

        offsets = Counter()
        for k, j in moved.items():
            offsets[j - k] += int(pixels[k])
        offset, share = offsets.most_common(1)[0]
        if share >= OFFSET_SHARE * moved_pixels:
            examples = ", ".join(f"{k} -> {name(j)}" for k, j in sorted(moved.items())[:3])
            if offset == -1:
                fix = ("if value 0 means other/unlabeled and k means class k-1 (ADE20K), pass --label-map ade20k; "
                       "otherwise a --label-map file (docs/formats.md)")
            else:
                fix = "pass a --label-map file that maps each mask value to its class (docs/formats.md)"
            return [f"the mask values look offset by {offset:+d} from the predictions' classes: {facts}, "
                    f"e.g. {examples}; {fix}"]
        examples = ", ".join(f"{k} -> {name(j)}" for k, j in sorted(moved.items(), key=lambda kj: -pixels[kj[0]])[:3])
        return [f"the labels and the predictions do not look like the same class space: {facts}, e.g. {examples}; "
                "translate the mask values with --label-map (cityscapes, ade20k, coco-stuff, or a file; "
                "docs/formats.md) and leave unlabeled values out with --ignore-index"]
