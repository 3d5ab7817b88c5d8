"""How fast the review page of ``segaudit report`` loads with 10,000 images, in headless Chromium.

    python benchmarks/report_load.py [WORK_DIR] [--images 10000] [--overlays 20] [--repeat 5]

Generates in WORK_DIR (default /tmp/segaudit-report-bench), without any prediction store
(``report`` reads only the ranking, its run record, the masks to hash them, the overlays and
the region table):

- ``masks/``: one small PNG mask per image (64x48, 5 classes), so that every image's mask
  SHA-256 is embedded, as in a real report;
- ``ranking.csv`` and ``ranking.run.json``: two methods (softmin, cil), a few percent of
  low-scoring images, classes and the masks directory in the record;
- ``regions.csv``: 0 to 6 regions per image;
- ``overlays/``: ``--overlays`` PNGs of 3124x716 (the size of a Cityscapes overlay), for the
  worst images.

Then runs ``segaudit report --regions regions.csv`` (timed) and opens the page REPEAT times in
headless Chromium (Debian's chromium and chromedriver, through Selenium: the browser-test
extra), each time in a fresh tab, and prints, per load, the time from navigation start to

- ``ready``: the page's script has parsed the data, filtered, rendered the visible rows and
  the worst image's detail (its ``performance.mark('segaudit-ready')``);
- ``load``: the load event's end;

then the time of a class filter and of a sort by another method on all the images (one
synchronous run of the page's code each), and of a jump to the end of the table until the
second animation frame after it (the rows are drawn on the first). The medians go in
docs/performance.md. Not run in CI.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["road", "sidewalk", "building", "sky", "car"]
KINDS = ["wrong_class", "missing", "boundary", "spurious"]


def generate(work: Path, images: int, overlays: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    masks = work / "masks"
    masks.mkdir(parents=True, exist_ok=True)
    ids = [f"city_{n // 500:02d}/{n:06d}" for n in range(images)]
    palette = sum(([40 * k, 255 - 40 * k, 60 * k % 256] for k in range(len(CLASSES))), [])
    for n, image_id in enumerate(ids):
        path = masks / f"{image_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        labels = np.full((48, 64), n % len(CLASSES), dtype=np.uint8)
        labels[10:20, (n % 40):(n % 40) + 20] = (n + 1) % len(CLASSES)
        mask = Image.fromarray(labels, mode="P")
        mask.putpalette(palette)
        mask.save(path)
    errors = set(rng.sample(range(images), max(1, images // 25)))
    rows = []
    for n, image_id in enumerate(ids):
        low = n in errors
        softmin = rng.uniform(0.001, 0.09) if low else rng.uniform(0.35, 0.95)
        cil = min(1.0, softmin + rng.uniform(0.05, 0.3))
        pixels = 3072
        low_pixels = rng.randint(300, 2000) if low else rng.randint(0, 40)
        suspect = CLASSES[n % len(CLASSES)]
        likely = CLASSES[(n + (1 if low else 0)) % len(CLASSES)]
        rows.append((image_id, softmin, cil, pixels, low_pixels, suspect, likely))
    rows.sort(key=lambda r: (r[1], r[0]))
    with open(work / "ranking.csv", "w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["rank", "image", "score", "softmin", "cil", "pixels", "low_pixels", "suspect_class",
                         "likely_class"])
        for rank, (image_id, softmin, cil, pixels, low_pixels, suspect, likely) in enumerate(rows, 1):
            writer.writerow([rank, image_id, repr(softmin), repr(softmin), repr(cil), pixels, low_pixels, suspect,
                             likely])
    record = {"command": "score", "ranking": "ranking.csv", "masks": str(masks.resolve()),
              "predictions": "/nowhere/preds.zarr", "methods": ["softmin", "cil"], "temperature": 0.1,
              "pixel_threshold": 0.5, "classes": CLASSES, "n_classes": len(CLASSES), "images_scored": images}
    (work / "ranking.run.json").write_text(json.dumps(record))
    with open(work / "regions.csv", "w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["rank", "image", "region", "score", "area", "x0", "y0", "x1", "y1", "annotated_class",
                         "likely_class", "mean_s", "mean_p_likely", "kind"])
        rank = 0
        for image_id, *_ in rows:
            for region in range(1, rng.randint(0, 6) + 1):
                rank += 1
                x0, y0 = rng.randint(0, 50), rng.randint(0, 30)
                writer.writerow([rank, image_id, region, f"{rng.uniform(0.3, 0.99):.4f}", rng.randint(1, 400), x0, y0,
                                 x0 + rng.randint(1, 14), y0 + rng.randint(1, 18), rng.choice(CLASSES),
                                 rng.choice(CLASSES), "0.1", "0.8", rng.choice(KINDS)])
    out = work / "overlays"
    out.mkdir(exist_ok=True)
    digits = max(4, len(str(images)))
    for rank, (image_id, *_rest) in enumerate(rows[:overlays], 1):
        pixels = np.zeros((716, 3124, 3), dtype=np.uint8)
        pixels[:, :, 0] = (np.arange(3124) * (rank + 1) % 256)[None, :]
        pixels[:, :, 1] = (np.arange(716) * 3 % 256)[:, None]
        pixels[100:300, 200 + rank * 20:900, 2] = 255
        Image.fromarray(pixels).save(out / f"{rank:0{digits}d}_{image_id.replace('/', '__')}.png", compress_level=3)


def segaudit() -> list[str]:
    return [sys.executable, "-m", "segaudit"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", nargs="?", default="/tmp/segaudit-report-bench", type=Path)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--overlays", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--screenshot", type=Path, help="save a PNG of the page as loaded")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from browser import start_chromium, stop_chromium, wait_for  # noqa: E402  (tests/browser.py)

    work: Path = args.work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    start = time.perf_counter()
    generate(work, args.images, args.overlays)
    print(f"generated {args.images} images in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    subprocess.run([*segaudit(), "report", "-r", str(work / "ranking.csv"), "--overlays", str(work / "overlays"),
                    "--regions", str(work / "regions.csv"), "--top", str(args.overlays), "-o", str(work / "report.html")],
                   check=True)
    built = time.perf_counter() - start
    size = (work / "report.html").stat().st_size
    print(f"segaudit report: {built:.2f} s, {size / 1e6:.1f} MB")

    import pytest  # tests/browser.py skips through pytest when something is missing

    try:
        driver = start_chromium(Path(tempfile.mkdtemp()), 1400, 1000)
    except pytest.skip.Exception as exc:
        raise SystemExit(f"cannot measure: {exc}") from None
    ready, load, filtering, sorting, scrolling = [], [], [], [], []
    try:
        url = (work / "report.html").resolve().as_uri()
        for _ in range(args.repeat):
            driver.get("about:blank")
            driver.get(url)
            wait_for(lambda: driver.execute_script("return document.documentElement.getAttribute('data-ready')"),
                     timeout=120, what="the report")
            wait_for(lambda: driver.execute_script("return performance.timing.loadEventEnd > 0"), timeout=120)
            ready.append(driver.execute_script("return performance.getEntriesByName('segaudit-ready')[0].startTime"))
            load.append(driver.execute_script("var t = performance.timing; return t.loadEventEnd - t.navigationStart"))
            rows = driver.execute_script("return document.querySelectorAll('#body .row').length")
            filtering.append(driver.execute_script(
                "var t = performance.now(), e = document.getElementById('cls'); e.value = 'car';"
                "e.dispatchEvent(new Event('change')); return performance.now() - t"))
            sorting.append(driver.execute_script(
                "var t = performance.now(); document.querySelector('#head [data-key=\"m1\"]').click();"
                "return performance.now() - t"))
            scrolling.append(driver.execute_async_script(
                "var done = arguments[arguments.length - 1], t = performance.now(), b = document.getElementById('rows');"
                "b.scrollTop = b.scrollHeight;"
                "requestAnimationFrame(function () { requestAnimationFrame(function () { done(performance.now() - t); }); });"))
            last = driver.execute_script("var r = document.querySelectorAll('#body .row'); return r[r.length - 1].getAttribute('data-id')")
            assert last, "no rows after scrolling"
            shown = driver.execute_script("return document.getElementById('status').textContent")
        if args.screenshot:
            driver.get(url)
            wait_for(lambda: driver.execute_script("return document.documentElement.getAttribute('data-ready')"))
            driver.execute_script("document.getElementById('review').scrollIntoView()")
            driver.save_screenshot(str(args.screenshot))
        version = driver.capabilities.get("browserVersion", "?")
    finally:
        stop_chromium(driver)
    print(f"Chromium {version}; {rows} rows in the document at load; after the class filter: {shown}")
    for name, values in (("ready", ready), ("load", load), ("class filter", filtering), ("sort by cil", sorting),
                         ("scroll to the end", scrolling)):
        print(f"{name:>18}: median {statistics.median(values):7.1f} ms   ({', '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    main()
