"""Options shared by several commands, and :class:`InputOptions`, the arguments and options
of every command that reads a masks directory and a prediction store, declared once."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import exit_on_error

if typing.TYPE_CHECKING:
    from ..results import InputSpec


def method_names() -> list[str]:
    """The scoring methods' names, read from the modules of segaudit/methods without importing
    them (so that ``--help`` loads no numba)."""
    import importlib.util
    import pkgutil

    spec = importlib.util.find_spec("segaudit.methods")
    modules = pkgutil.iter_modules(spec.submodule_search_locations)
    return sorted(m.name for m in modules if not m.name.startswith("_") and m.name != "base")

# str, not Path: Path("s3://bucket/masks") would lose a slash of the URL.
Masks = Annotated[str, typer.Argument(help="Directory of annotation masks (PNG, TIFF, NIfTI or .npy/.npz volumes), searched recursively; pixel value = class index. Or a URL of PNG/TIFF masks (s3://bucket/masks, anything fsspec lists).")]
Predictions = Annotated[str, typer.Argument(help="Zarr store of predicted class probabilities (per-image or stacked layout); or a URL (s3://, gs://, https://, anything fsspec opens), read chunk by chunk.")]
StorageOptions = Annotated[Optional[str], typer.Option("--storage-options", metavar="JSON", help="JSON object of fsspec options for masks or predictions given as URLs, e.g. '{\"endpoint_url\": \"http://127.0.0.1:9000\"}' or '{\"anon\": true}'. Credentials come from the environment (AWS_*, ~/.aws, GOOGLE_APPLICATION_CREDENTIALS); the options are never written to the run record.")]

#: remote.DEFAULT_TIMEOUT, literal here so that --help imports nothing more (a test checks that they agree).
DEFAULT_TIMEOUT = 60.0
Timeout = Annotated[float, typer.Option("--timeout", metavar="SECONDS", help="Seconds to wait for a connection or for the next bytes of an answer, for masks or predictions given as URLs (http(s)://, s3://; S3 tries a request twice) and for the --scheduler, before failing with an error that says so.")]


def parse_storage_options(value: str | None, timeout: float | None = None) -> dict:
    """``--storage-options`` (with ``--timeout`` as its ``"timeout"``, unless the JSON sets one):
    the JSON object as a dict (``{}`` when neither is given); exit 2 if it is not a JSON object
    or the timeout is not a positive number of seconds."""
    from ..io.remote import TIMEOUT_OPTION, timeout_of
    from ..io.remote import parse_storage_options as parse

    with exit_on_error():
        options = parse(value)
        if timeout is not None:
            options.setdefault(TIMEOUT_OPTION, timeout)
        timeout_of(options)
        return options
PixelThreshold = Annotated[float, typer.Option(help="Pixels whose probability of the annotated class is below this are low-quality pixels.")]
def check_downsample(value: int) -> int:
    """--downsample's callback: core.cells' check, as a one-line error."""
    from ..core import cells

    with exit_on_error():
        return cells.check_downsample(value)


Downsample = Annotated[int, typer.Option(callback=check_downsample, help="Cell size F of the FxF grid that clc and coco work on (1 = full resolution).")]


def _check_threads(value: Optional[int]) -> Optional[int]:
    from ._app import fail

    if value is not None and value < 1:
        raise fail(f"--threads must be a whole number >= 1, got {value}")
    return value


Threads = Annotated[Optional[int], typer.Option(callback=_check_threads, show_default="the machine's cores", help="Worker threads that score images at once (default: every core this process may use). The outputs are the same for any number.")]
Scheduler = Annotated[Optional[str], typer.Option("--scheduler", help="Score on the Dask cluster of this scheduler (e.g. tcp://10.0.0.5:8786): workers read their own images; the outputs are the same, byte for byte. Needs segaudit[dask].")]
DaskWorkers = Annotated[Optional[int], typer.Option("--dask-workers", help="Score on a local Dask cluster of N worker processes (at most 4 per core), started and closed by this run (not with --scheduler); their scratch files go to a temporary directory removed at the end. Needs segaudit[dask].")]
PartitionSize = Annotated[Optional[int], typer.Option("--partition-size", show_default="about 1 GiB of predictions", help="With --scheduler or --dask-workers: images per Dask task. The outputs do not depend on it.")]


def dask_client(scheduler: str | None, dask_workers: int | None, partition_size: int | None,
                timeout: float = DEFAULT_TIMEOUT):
    """The Dask client of --scheduler or --dask-workers (a context manager; ``nullcontext(None)``
    without either); exit 2, one line, if the options are bad or Dask is not installed.
    ``timeout``: seconds to wait for the scheduler's connection and first answer."""
    import contextlib

    from ._app import fail

    if scheduler is not None and dask_workers is not None:
        raise fail("--scheduler and --dask-workers exclude each other: give one")
    if dask_workers is not None and dask_workers < 1:
        raise fail(f"--dask-workers must be a whole number >= 1, got {dask_workers}")
    if partition_size is not None and partition_size < 1:
        raise fail(f"--partition-size must be a whole number >= 1, got {partition_size}")
    if scheduler is None and dask_workers is None:
        if partition_size is not None:
            raise fail("--partition-size needs --scheduler or --dask-workers")
        return contextlib.nullcontext(None)
    from ..distributed import connect, max_local_workers, require_dask

    with exit_on_error():
        require_dask()
    if dask_workers is not None and dask_workers > max_local_workers():
        raise fail(f"--dask-workers {dask_workers}: at most {max_local_workers()} local worker processes on this "
                   "machine (4 per core); for more, start a cluster and give --scheduler")
    if not 0 < timeout < float("inf"):
        raise fail(f"--timeout must be a positive number of seconds, got {timeout}")
    return connect(scheduler, dask_workers, timeout=timeout)


IgnoreIndex = Annotated[Optional[list[int]], typer.Option("--ignore-index", help="Label value that takes no part in any score; repeat for several. Default 255.")]
NoIgnore = Annotated[bool, typer.Option("--no-ignore", help="Score every label value (no ignore index).")]
MaskSuffix = Annotated[str, typer.Option(help="Use only masks whose name ends with this (before .png) and strip it from the image id, e.g. _gtFine_labelIds.")]
LabelMapOption = Annotated[Optional[str], typer.Option("--label-map", help="Translate mask values to class indices as masks are read: a built-in map (cityscapes: labelIds -> 19 trainIds; ade20k: 0 ignored, k -> k-1; coco-stuff: 182 ids -> 171 classes) or a JSON object / 2-column CSV of value -> class or ignore.")]
Palette = Annotated[Optional[Path], typer.Option(help="JSON list or mapping of colours to class indices; needed for RGB/RGBA masks.")]
Classes = Annotated[Optional[str], typer.Option(help="Class names, comma-separated or a file (JSON list or one per line); overrides the store's 'classes' attribute.")]
Logits = Annotated[Optional[bool], typer.Option("--logits/--probabilities", help="The store holds logits (softmax applied per pixel) or probabilities; overrides its 'kind' attribute.")]
ChannelsLast = Annotated[Optional[bool], typer.Option("--channels-last/--channels-first", help="Arrays are (H, W, K) / (N, H, W, K); overrides the store's 'channels_last' attribute.")]
AllowMissing = Annotated[bool, typer.Option(help="Skip masks without predictions and predictions without masks (and say how many) instead of failing.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, tables or notes; errors only.")]
Margin = Annotated[float, typer.Option(help="A pixel is suspect when the model's argmax is not its label and p[argmax] - p[label] is at least this (0 <= margin < 1).")]
Band = Annotated[int, typer.Option(help="Pixels within this many pixels of an annotation edge are boundary-band pixels, whose margin counts --band-weight as much in a region's score (real models blur every edge). A band wider than the image is the whole image.")]
BandWeight = Annotated[float, typer.Option(help="Weight (0-1) of band pixels in a region's score; 1 (the default, best on the benchmarks) counts them fully.")]


def region_rule(margin: float, band: int, band_weight: float):
    """The RegionRule of the --margin, --band and --band-weight options; exit 2 if one is bad."""
    from ..core.regions import RegionRule
    from ._app import fail

    try:
        return RegionRule(margin=margin, band=band, band_weight=band_weight)
    except ValueError as exc:  # "band weight must be ...": name the option
        name, rest = str(exc).split(" must", 1)
        raise fail(f"--{name.replace(' ', '-')} must{rest}") from None


Only = Annotated[Optional[str], typer.Option(help="Use only the images listed in this file ('-' = stdin), one per line: image ids, or mask paths as 'git diff --name-only' prints them. Deleted masks are skipped with a note.")]


def read_only_entries(only: str | None) -> list[str] | None:
    """The lines of an ``--only`` file (or stdin for '-'); InputError if it cannot be read."""
    import sys

    from ..errors import InputError

    if only is None:
        return None
    if only == "-":
        return sys.stdin.read().splitlines()
    from ..io.files import require_regular_file

    require_regular_file(only, "--only file")
    try:
        return Path(only).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read --only file {only}: {getattr(exc, 'strerror', None) or exc}") from None


class OutputFormat(str, Enum):
    """``--format`` of the commands that write a table, as ``segaudit.io.tables.FORMATS``
    (literal here so that --help imports nothing more; a test checks that they agree)."""

    csv = "csv"
    jsonl = "jsonl"
    json = "json"


def parse_classes(value: str | None) -> list[str] | None:
    """``--classes``: a file (JSON list, or one name per line) or a comma-separated list; exit 2
    if the file cannot be read."""
    if value is None:
        return None
    from ..io.files import read_class_names, require_regular_file

    with exit_on_error():
        require_regular_file(value, "--classes file")
    if not Path(value).is_file():
        return [name.strip() for name in value.split(",")]

    with exit_on_error():
        return read_class_names(value)


@dataclasses.dataclass(frozen=True)
class InputOptions:
    """The masks and predictions arguments and the input options, as a command receives them:
    a field of :class:`~segaudit.results.InputSpec` of the same name each (:meth:`spec`),
    but ``no_ignore`` and ``timeout``, which fold into ``ignore_index`` and ``storage_options``.

    A command decorated with :func:`reads_inputs` declares one parameter ``inputs:
    InputOptions`` and gets these fields as its first two arguments and, in the place of
    ``inputs``, its options; their types below are their command-line declarations.
    """

    masks: Masks
    predictions: Predictions
    ignore_index: IgnoreIndex = None
    no_ignore: NoIgnore = False
    mask_suffix: MaskSuffix = ""
    palette: Palette = None
    label_map: LabelMapOption = None
    classes: Classes = None
    logits: Logits = None
    channels_last: ChannelsLast = None
    allow_missing: AllowMissing = False
    storage_options: StorageOptions = None
    timeout: Timeout = DEFAULT_TIMEOUT

    def reads(self) -> dict[str, object]:
        """The paths this command reads, by description, for ``refuse_overwriting_inputs`` (a URL
        is nothing a local output could land in)."""
        from ..io.remote import is_url

        classes = self.classes if self.classes is not None and Path(self.classes).is_file() else None
        label_map = self.label_map if self.label_map is not None and Path(self.label_map).is_file() else None
        return {"masks directory": None if is_url(self.masks) else self.masks,
                "prediction store": None if is_url(self.predictions) else self.predictions,
                "--palette file": self.palette, "--classes file": classes, "--label-map file": label_map}

    def spec(self) -> InputSpec:
        """The :class:`~segaudit.results.InputSpec` of these options, which every reader of the
        library takes (``spec=``); exit 2 on a bad --classes file or --storage-options JSON."""
        from ..results import InputSpec

        # A field of both goes over as it is; these three are given in the command line's terms.
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(InputSpec) if hasattr(self, f.name)}
        return InputSpec(**{
            **given,
            "ignore_index": () if self.no_ignore else self.ignore_index or None,
            "classes": parse_classes(self.classes),
            "storage_options": parse_storage_options(self.storage_options, self.timeout),
        })


def reads_inputs(command):
    """Declare the :class:`InputOptions` on ``command`` in place of its ``inputs`` parameter.

    Typer sees masks and predictions as the first two arguments and the input options where
    ``inputs`` stands; ``command`` is called with them gathered into one InputOptions.
    """
    keyword = inspect.Parameter.KEYWORD_ONLY
    declared = typing.get_type_hints(InputOptions, include_extras=True)
    fields = [inspect.Parameter(field.name, keyword, annotation=declared[field.name],
                                default=inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default)
              for field in dataclasses.fields(InputOptions)]
    arguments = [field for field in fields if field.default is inspect.Parameter.empty]
    options = [field for field in fields if field.default is not inspect.Parameter.empty]
    signature = inspect.signature(command, eval_str=True)
    assert "inputs" in signature.parameters, f"{command.__module__} declares no 'inputs' parameter"
    parameters = list(arguments)
    for parameter in signature.parameters.values():
        parameters.extend(options if parameter.name == "inputs" else [parameter.replace(kind=keyword)])
    names = [field.name for field in fields]

    @functools.wraps(command)
    def wrapper(**values):
        inputs = InputOptions(**{name: values.pop(name) for name in names})
        return command(inputs=inputs, **values)

    wrapper.__signature__ = signature.replace(parameters=parameters)
    wrapper.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return wrapper
