"""``segaudit check``: validate a dataset without scoring it.

Pairing and sizes come from PNG headers and array metadata; every mask is decoded and its
label values checked; a sample of prediction blocks is read and checked for finite,
non-negative probabilities that sum to 1, and, on those blocks, the class-space check of
``score`` (:mod:`segaudit.core.sanity`) is run. Problems are collected rather than stopping at
the first, so one run lists them all. With a reviewer's decisions file, it also says which
images those decisions exempt from score's gates (:mod:`segaudit.ci.review`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.dataset import LabelValuesError, label_hint, open_dataset
from ..errors import InputError
from ..results import InputSpec
from ..core.kernel import BadProbabilities, ImageStats, KernelConfig, accumulate
from ..core.sanity import ClassSpaceCheck
from ..io.decisions import read_decisions
from .review import Review, review_masks


@dataclass
class CheckReport:
    images: int = 0
    n_classes: int = 0
    blocks_checked: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # the class-space check on the sampled blocks
    review: Review | None = None  # with ``reviewed``: which images a reviewer's ok exempts


def check(masks=None, predictions=None, *, sample_blocks: int = 32, on_progress=None, reviewed=None,
          spec: InputSpec | None = None, **inputs) -> CheckReport:
    """Validate pairing, sizes, label ranges and a sample of prediction blocks.

    Raises InputError for problems that stop everything (a missing store, unpaired
    files, a malformed ``reviewed`` decisions file); returns the others in
    ``CheckReport.problems``, every one: unreadable masks and size mismatches (from
    headers), bad label values, bad prediction blocks. With ``reviewed`` (a decisions.csv),
    ``CheckReport.review`` says which of the dataset's images its ``ok`` decisions exempt
    from score's gates, which went stale (the mask changed since) and which name images the
    dataset does not have.
    """
    decisions = read_decisions(reviewed) if reviewed is not None else None  # a bad file fails first
    header_problems: list[str] = []
    spec = InputSpec.of(masks, predictions, spec, **inputs)  # the inputs: as segaudit.score takes them
    dataset = open_dataset(spec, problems=header_problems)
    store = dataset.store
    report = CheckReport(images=len(dataset.pairs) + len(header_problems), n_classes=store.n_classes,
                         problems=header_problems)
    # An even spread of images, each contributing the first of its row blocks.
    step = max(1, len(dataset.pairs) // max(1, sample_blocks))
    sampled = set(range(0, len(dataset.pairs), step)[:sample_blocks]) if sample_blocks > 0 else set()
    class_space = ClassSpaceCheck(store.n_classes)
    # Masks holding the same values >= K are one problem, one line (a dataset's void value
    # is in most of its masks): grouped by those values, listed in dataset order.
    by_values: dict[tuple[int, ...], list[str]] = {}
    first_error: dict[tuple[int, ...], str] = {}  # a group of one keeps its mask's own line
    for index, (mask, image_id) in enumerate(dataset.pairs):
        try:
            labels = dataset.read_labels(mask)
        except LabelValuesError as exc:
            if exc.values not in by_values:
                report.problems.append(exc.values)  # its place; the line is written below
                first_error[exc.values] = exc.cli_message
            by_values.setdefault(exc.values, []).append(image_id)
            continue
        except InputError as exc:
            report.problems.append(exc.cli_message)
            continue
        if index in sampled:
            start, stop = store.row_blocks(image_id)[0]
            try:
                stats = ImageStats(store.n_classes)
                accumulate(stats, dataset.read_block(image_id, start, stop),
                           labels[start:stop], KernelConfig(dataset.decoding), row_offset=start)
                class_space.add_image(stats)
            except BadProbabilities as exc:
                report.problems.append(dataset.probabilities_error(image_id, exc).cli_message)
            except InputError as exc:
                report.problems.append(exc.cli_message)
            report.blocks_checked += 1
        if on_progress:
            on_progress("checking", index + 1, len(dataset.pairs))
    report.problems = [problem if isinstance(problem, str) else first_error[problem] if len(by_values[problem]) == 1
                       else _label_values_problem(problem, by_values[problem], store.n_classes)
                       for problem in report.problems]
    report.warnings = class_space.warnings(store.classes)
    if decisions is not None:
        report.review = review_masks(reviewed, spec.masks, spec.mask_suffix,
                                     [image_id for _, image_id in dataset.pairs], decisions, spec.storage_options)
    return report


def _label_values_problem(values: tuple[int, ...], image_ids: list[str], n_classes: int, shown: int = 5) -> str:
    """One line for every mask holding ``values`` (>= K, not ignored)."""
    listed = ", ".join(image_ids[:shown]) + (", ..." if len(image_ids) > shown else "")
    named = ", ".join(map(str, values[:3])) + (f" and {len(values) - 3} more" if len(values) > 3 else "")
    plural = "s" if len(values) > 1 else ""
    return (f"{len(image_ids)} mask(s) hold label value{plural} {named} >= K={n_classes}, not ignored: {listed}"
            + f" ({label_hint(list(values)).cli})")
