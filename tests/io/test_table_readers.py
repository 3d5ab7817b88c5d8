"""The readers of segaudit's tables other than the ranking: the region table (io/regions.py)
and the class-confusion summary (io/confusions.py). Their one-line errors through the commands
are in tests/cli/test_region_views.py and tests/outputs/test_exports.py."""

from __future__ import annotations

import json

import pytest

from segaudit.errors import InputError
from segaudit.io.confusions import load_confusions
from segaudit.io.regions import load_regions


def test_load_regions_orders_each_images_regions(tmp_path):
    path = tmp_path / "r.json"
    rows = [{"rank": n, "image": "a", "region": region, "score": 0.9 - n / 10, "area": 4, "x0": 0, "y0": 0,
             "x1": 2, "y1": 2, "annotated_class": "sky", "likely_class": "road", "mean_s": None,
             "mean_p_likely": 0.9, "kind": "missing"} for n, region in enumerate((2, 1), 1)]
    path.write_text(json.dumps({"columns": list(rows[0]), "rows": rows}))
    table = load_regions(path)
    assert table.count == 2 and [r.region for r in table.by_image["a"]] == [1, 2]
    assert table.by_image["a"][0].box == (0, 0, 2, 2)


def test_load_confusions(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('annotated,predicted,pixels,images,share\n"cars, trucks",road,10,2,0.5\n')
    assert load_confusions(path) == [("cars, trucks", "road", 10, 2, 0.5)]
    path.write_text("annotated,predicted,pixels\nx,y,1\n")
    with pytest.raises(InputError, match="missing column"):
        load_confusions(path)
