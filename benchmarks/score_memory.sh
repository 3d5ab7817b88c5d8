#!/usr/bin/env bash
# Time and peak memory of `segaudit score --method all` on generated Cityscapes-sized data
# (19 classes, 1024x2048, float16), for two dataset sizes: peak RSS must not grow with N.
#   bash benchmarks/score_memory.sh [WORK_DIR]     (needs ~7 GB of disk; not run in CI)
set -euo pipefail
work="${1:-/tmp/segaudit-bench}"
here="$(cd "$(dirname "$0")" && pwd)"
for n in 20 80; do
    [ -d "$work/d$n/preds.zarr" ] || python "$here/make_dataset.py" "$work/d$n" --images "$n" >/dev/null
    segaudit score "$work/d$n/masks" "$work/d$n/preds.zarr" -q -o "$work/warmup.csv"  # compile cache, page cache
    for method in softmin all; do
        /usr/bin/time -v segaudit score "$work/d$n/masks" "$work/d$n/preds.zarr" --method "$method" -q \
            -o "$work/ranking$n.csv" 2> "$work/time.log"
        wall=$(grep -oP 'Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): \K.*' "$work/time.log")
        rss=$(grep -oP 'Maximum resident set size \(kbytes\): \K.*' "$work/time.log")
        echo "images=$n method=$method wall=$wall peak_rss_mb=$((rss / 1024))"
    done
done
