"""A Markdown summary of a run for ``$GITHUB_STEP_SUMMARY`` or a pull-request comment."""

from __future__ import annotations

import re

from ..ci.gates import GateResult
from ..results import ScoreRun
from .text import format_score


_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]{}()#+\-.!|~<>&])")


def _cell(text: str) -> str:
    """Plain text (a class name) from a file: no Markdown, no HTML, no table break.

    Every ASCII punctuation character Markdown or HTML could act on is backslash-escaped
    (GitHub renders ``\\<`` as ``<``); line breaks become spaces.
    """
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(str(text).splitlines()))


def _code(text: str) -> str:
    """``text`` (an image id) as a code span it cannot break out of.

    The fence is one backtick longer than the longest run inside; a space pads text that
    starts or ends with a backtick; ``|`` is escaped for tables (GitHub honours ``\\|``
    inside code spans in tables); line breaks become spaces. Code spans show HTML as text.
    """
    text = " ".join(str(text).splitlines())
    runs = [len(run) for run in re.findall("`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}"


def summary_markdown(run: ScoreRun, gates: list[GateResult], worst: int = 10) -> str:
    """Counts, failed gates with their images, and the worst images with their classes."""
    key = run.methods[0]
    failed = [g for g in gates if not g.passed]
    status = "❌ gate failed" if failed else ("✅ all gates passed" if gates else "scored")
    lines = [f"## segaudit: {status}", ""]
    lines.append(f"- images scored: {len(run.results)} (ranked by `{key}`; methods: "
                 + ", ".join(f"`{m}`" for m in run.methods) + ")")
    if run.options.get("only") is not None:
        lines.append(f"- subset: {len(run.options['only'])} changed image(s)"
                     + (f", {len(run.options['only_deleted'])} deleted mask(s) skipped"
                        if run.options.get("only_deleted") else ""))
    if run.empty_images:
        lines.append(f"- images with no scored pixel: {len(run.empty_images)}")
    if run.reviewed is not None:
        lines.append(f"- reviewed: {run.reviewed.exempted} image(s) marked ok with unchanged masks exempt from the "
                     f"gates; {run.reviewed.stale} stale decision(s) (mask changed since), judged again")
    lines.append("")
    if run.warnings:  # the dataset-level check (labels and predictions in one class space?)
        lines.append("### Warnings")
        lines.append("")
        lines.extend(f"- ⚠️ {_cell(warning)}" for warning in run.warnings)
        lines.append("")
    if run.calibration is not None:  # --method auto: how well errors can be found with this model
        from .calibration import calibration_markdown

        lines.append("### Calibration")
        lines.append("")
        lines.extend(calibration_markdown(run.calibration))
        lines.append("")
    if run.regions is not None and run.regions.calibration is not None:  # score --regions
        from ..calibration.regions import RegionCalibration
        from .calibration import region_calibration_markdown

        lines += ["### Error regions", ""]
        lines += region_calibration_markdown(RegionCalibration.from_dict(run.regions.calibration), run.regions.regions)
        lines.append("")
    if gates:
        lines.append("### Gates")
        lines.append("")
        for result in gates:
            mark = "✅" if result.passed else "❌"
            lines.append(f"- {mark} `{result.gate.describe()}`: {len(result.failures)} image(s)")
            for image_id, value in result.failures[:worst]:
                lines.append(f"  - {_code(image_id)}: {value:.4g}")
            if len(result.failures) > worst:
                lines.append(f"  - … and {len(result.failures) - worst} more")
            if result.exempted:
                lines.append(f"  - {len(result.exempted)} more fail it but are exempt (reviewed ok): "
                             + ", ".join(_code(image_id) for image_id, _ in result.exempted[:worst])
                             + (" …" if len(result.exempted) > worst else ""))
        lines.append("")
    if run.results:
        lines.append(f"### Worst {min(worst, len(run.results))} images")
        lines.append("")
        lines.append("| rank | image | " + " | ".join(run.methods) + " | low pixels | annotated → model sees |")
        lines.append("|---:|---|" + "---:|" * len(run.methods) + "---:|---|")
        for rank, result in enumerate(run.results[:worst], 1):
            scores = " | ".join(format_score(result.scores[m], missing="—", fixed=True) for m in run.methods)
            classes = (f"{_cell(run.class_name(result.suspect_class))} → {_cell(run.class_name(result.likely_class))}"
                       if result.low_pixels else "")
            lines.append(f"| {rank} | {_code(result.image_id)} | {scores} | {result.low_pixels} | {classes} |")
        lines.append("")
    return "\n".join(lines)
