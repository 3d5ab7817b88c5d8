#!/usr/bin/env bash
# A pull-request-style run (30 changed images, --only + --baseline) against a full run, on a
# generated 2,000-image dataset (19 classes, 128x256, float16).
#   bash benchmarks/pr_run.sh [WORK_DIR]      (needs ~2.5 GB of disk; not run in CI)
set -euo pipefail
work="${1:-/tmp/segaudit-bench}"
here="$(cd "$(dirname "$0")" && pwd)"
data="$work/d2000"
[ -d "$data/preds.zarr" ] || python "$here/make_dataset.py" "$data" --images 2000 --height 128 --width 256 >/dev/null
segaudit score "$data/masks" "$data/preds.zarr" -q -o "$work/warmup.csv"  # compile and page caches
ls "$data/masks" | shuf -n 30 --random-source=<(yes) > "$work/changed.txt"
timed() {  # label, then the command
    local label=$1; shift
    /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" || true
    read -r wall rss < "$work/time.txt"
    echo "$label: wall=${wall}s peak_rss_mb=$((rss / 1024))"
}
timed "full run, softmin+clc, 2000 images" \
    segaudit score "$data/masks" "$data/preds.zarr" -m softmin,clc -q -o "$work/main.csv"
timed "PR run, softmin+clc, 30 images, --only --baseline" \
    segaudit score "$data/masks" "$data/preds.zarr" -m softmin,clc -q --only "$work/changed.txt" \
        --baseline "$work/main.csv" --fail-under 0.0 -o "$work/pr.csv"
timed "PR run, softmin only, 30 images" \
    segaudit score "$data/masks" "$data/preds.zarr" -q --only "$work/changed.txt" -o "$work/pr-softmin.csv"
