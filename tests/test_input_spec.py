"""InputSpec: one definition of what a run reads, which the run record stores and reopens,
and which Dask ships (so it pickles)."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from datasets import make_dataset, write_masks
from segaudit.api import score
from segaudit.core.dataset import open_dataset
from segaudit.io.rankings import read_run_record
from segaudit.outputs.ranking import write_ranking
from segaudit.results import InputSpec, RunRecord

IDS = ("city/a", "city/b", "other/c")


def test_every_recorded_input_is_a_run_record_field_and_every_option_a_field():
    # A recorded input option needs its RunRecord field (its place in the JSON); the
    # record's input keys are exactly the spec's recorded fields, and the command line's
    # options build a spec of every field (InputOptions.spec).
    from segaudit.cli._options import InputOptions

    record_keys = RunRecord.keys()
    assert set(InputSpec.recorded_fields()) <= set(record_keys)
    assert [k for k in record_keys if k in InputSpec.recorded_fields()] == list(InputSpec.recorded_fields())
    options = InputOptions("m", "p")
    built = options.spec()
    assert isinstance(built, InputSpec) and built.masks == "m" and built.predictions == "p"
    # The options in the command line's terms: repeated --ignore-index, --no-ignore, --timeout.
    given = InputOptions("m", "p", ignore_index=[3, 255], palette=Path("pal.json"), classes="a,b", timeout=5.0,
                         mask_suffix="_gt", allow_missing=True).spec()
    assert (given.ignore_index, given.palette, given.classes, given.mask_suffix, given.allow_missing) == (
        (3, 255), "pal.json", ("a", "b"), "_gt", True)
    assert given.storage_options == {"timeout": 5.0}
    assert InputOptions("m", "p", ignore_index=[3], no_ignore=True).spec().ignore_index == ()
    cli_only = {"no_ignore", "timeout"}  # folded into ignore_index and storage_options
    spec_fields = {f.name for f in dataclasses.fields(InputSpec)} - {"only"}  # --only is score's and regions'
    assert {f.name for f in dataclasses.fields(InputOptions)} - cli_only == spec_fields


@pytest.fixture(scope="module")
def every_option(tmp_path_factory):
    """A dataset and a spec that sets every input field away from its default, in the
    resolved form a run record keeps (absolute paths, sorted ignore indices, ids)."""
    root = tmp_path_factory.mktemp("spec")
    made = make_dataset(root / "plain", IDS, n_classes=4, size=(9, 8), seed=5)
    masks = write_masks(root / "masks", made.labels, suffix="_gt")  # --mask-suffix _gt
    label_map = root / "map.json"  # identity, 255 ignored
    label_map.write_text(json.dumps({**{str(k): k for k in range(4)}, "255": None}))
    palette = root / "palette.json"  # colours only matter to RGB masks: these are P
    palette.write_text(json.dumps({"#000000": 0, "#010101": 1}))
    spec = InputSpec(
        masks=str(masks.resolve()), predictions=str(made.store.resolve()), ignore_index=(3, 255),
        mask_suffix="_gt", palette=str(palette.resolve()), label_map=str(label_map.resolve()),
        classes=("road", "sky", "car", "tree"), logits=False, channels_last=False, allow_missing=True,
        only=("city/b", "other/c"), storage_options={"anon": True},
    )
    return spec, root


def test_the_round_trip_spec_sets_every_field(every_option):
    # So that a field added to InputSpec without its record round trip fails the test below.
    spec, _ = every_option
    for f in dataclasses.fields(InputSpec):
        if f.default is not dataclasses.MISSING:
            assert getattr(spec, f.name) != f.default, f"the round-trip spec leaves {f.name} at its default"


def test_a_spec_round_trips_through_a_run_record(every_option):
    spec, root = every_option
    run = score(spec=spec, methods=("cil",))
    write_ranking(run, root / "ranking.csv")
    record = read_run_record(root / "ranking.run.json")
    # Storage options are never recorded: the caller gives them again.
    assert "anon" not in (root / "ranking.run.json").read_text()
    reopened = InputSpec.from_record(record, storage_options=spec.storage_options)
    assert reopened == spec
    for f in dataclasses.fields(InputSpec):
        assert getattr(reopened, f.name) == getattr(spec, f.name), f.name
    # ... and the reopened spec opens the same dataset, resolved as the run's was.
    dataset = open_dataset(reopened)
    assert [image_id for _, image_id in dataset.pairs] == ["city/b", "other/c"]
    assert dataset.spec == spec and dataset.ignore == (3, 255)


def test_a_record_without_options_reopens_with_the_defaults():
    # An older or hand-written record: absent options take InputSpec's defaults.
    record = RunRecord.from_dict({"masks": "/m", "predictions": "/p.zarr"})
    assert InputSpec.from_record(record) == InputSpec("/m", "/p.zarr")


def test_a_spec_pickles_as_dask_ships_it(every_option):
    spec, _ = every_option
    shipped = pickle.loads(pickle.dumps(spec))
    assert shipped == spec
    for f in dataclasses.fields(InputSpec):
        assert getattr(shipped, f.name) == getattr(spec, f.name), f.name
    from segaudit.distributed import dataset_spec

    assert pickle.loads(pickle.dumps(dataset_spec(spec))).inputs == spec  # paths already absolute


def test_keywords_and_spec_make_the_same_run(every_option, tmp_path):
    spec, _ = every_option
    by_spec = score(spec=spec, methods=("rsoftmin", "clc"))
    keywords = {f.name: getattr(spec, f.name) for f in dataclasses.fields(InputSpec)}
    by_keywords = score(keywords.pop("masks"), keywords.pop("predictions"), methods=("rsoftmin", "clc"),
                        **{**keywords, "classes": list(keywords["classes"]), "only": list(keywords["only"])})
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_ranking(by_spec, tmp_path / "a" / "ranking.csv")
    write_ranking(by_keywords, tmp_path / "b" / "ranking.csv")
    for name in ("ranking.csv", "ranking.run.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_spec_with_other_inputs_is_refused(every_option):
    spec, _ = every_option
    with pytest.raises(TypeError, match="not both"):
        score(spec.masks, spec.predictions, spec=spec)
    with pytest.raises(TypeError, match="not both"):
        score(spec=spec, ignore_index=7)
    with pytest.raises(TypeError, match="masks and predictions"):
        score(methods=("cil",))
    with pytest.raises(TypeError, match="not both"):
        open_dataset(spec, ignore_index=np.int64(7))
