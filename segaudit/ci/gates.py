"""Quality gates for CI: which images fail a score threshold or a flagged-pixel budget."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import InputError
from ..results import ScoreRun


@dataclass(frozen=True)
class Gate:
    """One gate: images whose ``method`` score is below ``threshold``, or (method
    ``"flagged"``) whose clc-flagged pixel count is above it."""

    method: str
    threshold: float

    def describe(self) -> str:
        if self.method == "flagged":
            return f"clc flagged pixels > {self.threshold:g}"
        return f"{self.method} < {self.threshold:g}"


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    failures: list[tuple[str, float]]  # (image id, value), worst first
    #: Images that fail the gate but are exempt (marked ok, see ci.review), worst first.
    exempted: list[tuple[str, float]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def make_gates(methods: tuple[str, ...], fail_under: float | None, fail_under_method: str | None,
               max_flagged: int | None) -> list[Gate]:
    """The gates a run asked for, checked against the methods it computes."""
    gates = []
    if fail_under_method is not None and fail_under is None:
        raise InputError("--fail-under-method needs --fail-under")
    if fail_under is not None and not math.isfinite(fail_under):
        raise InputError(f"--fail-under must be a finite number, got {fail_under}")
    if fail_under is not None:
        method = fail_under_method or methods[0]
        if method not in methods:
            raise InputError(f"--fail-under-method {method} is not computed; add it to --method")
        gates.append(Gate(method, float(fail_under)))
    if max_flagged is not None:
        if "clc" not in methods and "auto" not in methods:  # auto computes clc too
            raise InputError("--max-flagged counts clc's flagged pixels; add clc to --method")
        if max_flagged < 0:
            raise InputError(f"--max-flagged must be >= 0, got {max_flagged}")
        gates.append(Gate("flagged", float(max_flagged)))
    return gates


def check_gates(run: ScoreRun, gates: list[Gate], exempt=frozenset()) -> list[GateResult]:
    """Evaluate every gate on every image (images without a score never fail).

    ``exempt``: image ids a reviewer accepted (``--reviewed``, :mod:`segaudit.ci.review`);
    they never fail a gate and are listed in :attr:`GateResult.exempted` instead.
    """
    results = []
    for gate in gates:
        if gate.method == "flagged":
            failures = [(r.image_id, float(r.flagged_pixels)) for r in run.results
                        if r.flagged_pixels is not None and r.flagged_pixels > gate.threshold]
            failures.sort(key=lambda f: (-f[1], f[0]))
        else:
            failures = [(r.image_id, r.scores[gate.method]) for r in run.results
                        if not math.isnan(r.scores[gate.method]) and r.scores[gate.method] < gate.threshold]
            failures.sort(key=lambda f: (f[1], f[0]))
        results.append(GateResult(gate, [f for f in failures if f[0] not in exempt],
                                  [f for f in failures if f[0] in exempt]))
    return results
