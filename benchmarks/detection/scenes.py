"""Procedural street scenes with true segmentation masks, for the detection benchmark.

    python benchmarks/detection/scenes.py OUT_DIR [--images 640 --height 96 --width 128 --seed 0]

Writes OUT_DIR/photos/<id>.png (RGB), OUT_DIR/masks/<id>.png (P-mode, palette index =
class, Cityscapes colours) and OUT_DIR/classes.txt. Ids are ``train/NNNN`` for the first
half and ``val/NNNN`` for the second (the paper's train/validation split).

Each scene is drawn at twice the output size and averaged down 2x2 (the photo) or sampled
(the mask), in painter's order:

- sky with a vertical gradient and soft clouds; a horizon at a random height;
- a skyline of buildings with facade colours, window grids and per-building shading;
- a road in perspective towards a vanishing point, with dashed lane markings;
- sidewalks along both road edges (paving pattern), kerb-side grass (vegetation);
- trees (trunk and a lumpy canopy) and hedges; poles with traffic signs;
- cars in perspective (body, cabin, windows, wheels, a shadow); pedestrians on the sidewalks;
- street clutter (boxes, barriers) that is annotated as ``unlabeled``;
- global lighting (exposure, colour temperature, a horizontal light gradient), sensor
  noise and a slight blur from the downsampling.

Only numpy and Pillow are used; a seed gives the same dataset every time.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["unlabeled", "sky", "building", "road", "sidewalk", "vegetation", "car", "pole", "person", "sign"]
UNLABELED, SKY, BUILDING, ROAD, SIDEWALK, VEGETATION, CAR, POLE, PERSON, SIGN = range(len(CLASSES))
PALETTE = [(0, 0, 0), (70, 130, 180), (70, 70, 70), (128, 64, 128), (244, 35, 232), (107, 142, 35),
           (0, 0, 142), (153, 153, 153), (220, 20, 60), (220, 220, 0)]


class Canvas:
    """A label map and an RGB float image drawn together, at 2x the output size."""

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        self.rng = rng
        self.h, self.w = height, width
        self.yy, self.xx = np.mgrid[0:height, 0:width].astype(np.float64)
        self.label = np.full((height, width), UNLABELED, np.uint8)
        self.rgb = np.zeros((height, width, 3))

    def noise(self, scale: float, cells: int = 8) -> np.ndarray:
        """Smooth value noise in [-1, 1] with ``cells`` x ``cells`` control points, amplitude ``scale``."""
        grid = self.rng.uniform(-1, 1, (cells + 1, cells + 1))
        gy = self.yy / self.h * cells
        gx = self.xx / self.w * cells
        y0, x0 = np.floor(gy).astype(int), np.floor(gx).astype(int)
        y0, x0 = np.minimum(y0, cells - 1), np.minimum(x0, cells - 1)
        ty, tx = gy - y0, gx - x0
        ty, tx = ty * ty * (3 - 2 * ty), tx * tx * (3 - 2 * tx)
        top = grid[y0, x0] * (1 - tx) + grid[y0, x0 + 1] * tx
        bottom = grid[y0 + 1, x0] * (1 - tx) + grid[y0 + 1, x0 + 1] * tx
        return scale * (top * (1 - ty) + bottom * ty)

    def paint(self, mask: np.ndarray, cls: int, colour, texture: np.ndarray | float = 0.0) -> None:
        """Set ``mask``'s pixels to class ``cls`` and to ``colour`` (0..1 RGB) times (1 + texture)."""
        self.label[mask] = cls
        shade = 1.0 + (texture[mask] if isinstance(texture, np.ndarray) else np.full(int(mask.sum()), texture))
        self.rgb[mask] = np.clip(np.asarray(colour)[None, :] * shade[..., None], 0, 1.2)


def _colour(rng, base, spread=0.08):
    return np.clip(np.asarray(base, float) + rng.normal(0, spread, 3), 0.02, 1.0)


def draw_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene at (2 * height, 2 * width): (uint8 labels, float RGB in 0..1)."""
    c = Canvas(rng, 2 * height, 2 * width)
    H, W, yy, xx = c.h, c.w, c.yy, c.xx
    horizon = rng.uniform(0.36, 0.5) * H
    vx = rng.uniform(0.3, 0.7) * W  # vanishing point

    # Sky: gradient, clouds.
    sky = np.ones((H, W), bool)
    top, low = _colour(rng, (0.35, 0.55, 0.85), 0.06), _colour(rng, (0.75, 0.82, 0.9), 0.04)
    t = np.clip(yy / horizon, 0, 1)[..., None]
    c.label[sky] = SKY
    c.rgb[:] = top * (1 - t) + low * t
    clouds = np.clip(c.noise(1.0, 5) + rng.uniform(-0.4, 0.2), 0, 1)[..., None]
    c.rgb[:] = c.rgb * (1 - 0.7 * clouds) + 0.95 * 0.7 * clouds

    # Buildings: a skyline of facades down to the horizon (and below it, behind the sidewalk).
    x = -rng.uniform(0, 20)
    while x < W:
        bw = rng.uniform(0.12, 0.35) * W
        btop = horizon - rng.uniform(0.05, 0.42) * H
        if rng.random() < 0.18:  # a gap in the skyline
            x += bw * 0.6
            continue
        mask = (xx >= x) & (xx < x + bw) & (yy >= btop) & (yy < horizon + 0.12 * H)
        base = _colour(rng, rng.choice([(0.55, 0.5, 0.45), (0.7, 0.65, 0.55), (0.45, 0.4, 0.38),
                                        (0.6, 0.45, 0.35), (0.5, 0.52, 0.55)]), 0.06)
        texture = c.noise(0.08, 6) + rng.uniform(-0.15, 0.1)
        # Windows: a grid of darker (or lit) rectangles.
        pitch_x, pitch_y = rng.uniform(7, 12), rng.uniform(8, 13)
        wx = np.mod(xx - x, pitch_x) < 0.55 * pitch_x
        wy = np.mod(yy - btop, pitch_y) < 0.5 * pitch_y
        windows = wx & wy & (yy > btop + 3) & (xx > x + 2) & (xx < x + bw - 2)
        texture = texture + np.where(windows, rng.choice([-0.45, -0.35, 0.3]), 0.0)
        c.paint(mask, BUILDING, base, texture)
        x += bw

    # Ground below the horizon: grass verge (vegetation) where no building stands.
    ground = (yy >= horizon) & (c.label == SKY)
    c.paint(ground, VEGETATION, _colour(rng, (0.3, 0.45, 0.18), 0.05), c.noise(0.15, 24))

    # Road and sidewalks in perspective.
    left_bottom, right_bottom = rng.uniform(-0.05, 0.3) * W, rng.uniform(0.7, 1.05) * W
    depth = np.clip((yy - horizon) / (H - horizon), 0, None)  # 0 at the horizon, 1 at the bottom
    road_l = vx + (left_bottom - vx) * depth
    road_r = vx + (right_bottom - vx) * depth
    below = yy > horizon + 1
    walk = rng.uniform(0.2, 0.45) * W * depth
    sidewalk = below & (((xx >= road_l - walk) & (xx < road_l)) | ((xx > road_r) & (xx <= road_r + walk)))
    paving = (np.mod(xx + 3 * yy, 9) < 1) | (np.mod(yy, 7) < 1)
    c.paint(sidewalk, SIDEWALK, _colour(rng, (0.62, 0.58, 0.55), 0.05),
            c.noise(0.06, 16) - 0.12 * paving)
    road = below & (xx >= road_l) & (xx <= road_r)
    c.paint(road, ROAD, _colour(rng, (0.33, 0.33, 0.35), 0.03), c.noise(0.1, 20))
    lane = road & (np.abs(xx - (vx + (0.5 * (left_bottom + right_bottom) - vx) * depth)) < 0.8 + 3 * depth)
    lane &= np.mod(np.log1p(depth * 40) * 6, 2) < 1
    c.rgb[lane] = 0.85

    def ground_y(fraction: float) -> float:
        return horizon + fraction * (H - horizon)

    # Street clutter annotated as unlabeled: boxes and barriers on the sidewalks.
    for _ in range(rng.integers(0, 4)):
        d = rng.uniform(0.15, 0.9)
        gy = ground_y(d)
        side = rng.choice([-1, 1])
        edge = vx + ((left_bottom if side < 0 else right_bottom) - vx) * d
        cx = edge + side * rng.uniform(0.2, 0.8) * 0.2 * W * d
        size = (4 + 22 * d) * rng.uniform(0.6, 1.3)
        mask = (np.abs(xx - cx) < size * rng.uniform(0.5, 1.2)) & (yy < gy) & (yy > gy - size)
        c.paint(mask, UNLABELED, _colour(rng, rng.choice([(0.6, 0.4, 0.2), (0.8, 0.75, 0.2),
                                                           (0.4, 0.4, 0.45)]), 0.08), c.noise(0.1, 30))

    # Things: trees, poles with signs, pedestrians and cars, far first.
    things = []
    for _ in range(rng.integers(2, 7)):
        things.append(("tree", rng.uniform(0.05, 0.8)))
    for _ in range(rng.integers(0, 4)):
        things.append(("pole", rng.uniform(0.1, 0.9)))
    for _ in range(rng.integers(0, 4)):
        things.append(("person", rng.uniform(0.15, 0.95)))
    for _ in range(rng.integers(0, 5)):
        things.append(("car", rng.uniform(0.05, 0.95)))
    things.sort(key=lambda thing: thing[1])

    for kind, d in things:
        gy = ground_y(d)
        scale = 0.1 + 0.9 * d
        l_edge = vx + (left_bottom - vx) * d
        r_edge = vx + (right_bottom - vx) * d
        side = rng.choice([-1, 1])
        kerb = l_edge if side < 0 else r_edge
        walk_w = max(walk[int(min(gy, H - 1)), 0], 2.0)
        if kind == "tree":
            cx = kerb + side * rng.uniform(0.2, 1.2) * walk_w
            trunk_h = (40 + 50 * rng.random()) * scale
            trunk = (np.abs(xx - cx) < max(1.0, 2.2 * scale)) & (yy < gy) & (yy > gy - trunk_h)
            c.paint(trunk, VEGETATION, _colour(rng, (0.35, 0.25, 0.15), 0.04), c.noise(0.1, 30))
            r = (18 + 22 * rng.random()) * scale
            canopy = np.zeros((H, W), bool)
            for _ in range(rng.integers(3, 7)):
                ox, oy = rng.normal(0, 0.6 * r), rng.normal(0, 0.4 * r)
                rr = r * rng.uniform(0.5, 0.9)
                canopy |= (xx - cx - ox) ** 2 + (yy - (gy - trunk_h) - oy) ** 2 < rr**2
            canopy &= c.noise(1.0, 40) > -0.6
            c.paint(canopy, VEGETATION, _colour(rng, (0.2, 0.4, 0.12), 0.05), c.noise(0.35, 48))
        elif kind == "pole":
            cx = kerb + side * rng.uniform(0.05, 0.4) * walk_w
            pole_h = (60 + 60 * rng.random()) * scale
            pole = (np.abs(xx - cx) < max(1.0, 2.0 * scale)) & (yy < gy) & (yy > gy - pole_h)
            c.paint(pole, POLE, _colour(rng, (0.45, 0.45, 0.47), 0.04), c.noise(0.05, 20))
            if rng.random() < 0.7:
                sy, sr = gy - pole_h * rng.uniform(0.7, 0.95), (5 + 5 * rng.random()) * scale + 1.5
                if rng.random() < 0.5:
                    sign = (xx - cx) ** 2 + (yy - sy) ** 2 < sr**2
                else:
                    sign = (np.abs(xx - cx) < sr) & (np.abs(yy - sy) < 0.8 * sr)
                c.paint(sign, SIGN, _colour(rng, rng.choice([(0.85, 0.15, 0.1), (0.1, 0.3, 0.8),
                                                             (0.9, 0.8, 0.1)]), 0.05), c.noise(0.05, 20))
        elif kind == "person":
            cx = kerb + side * rng.uniform(0.2, 0.9) * walk_w
            ph = (40 + 16 * rng.random()) * scale + 6
            body = ((xx - cx) / (0.17 * ph)) ** 2 + ((yy - (gy - 0.55 * ph)) / (0.25 * ph)) ** 2 < 1
            legs = (np.abs(np.abs(xx - cx) - 0.07 * ph) < 0.05 * ph + 0.4) & (yy <= gy) & (yy > gy - 0.4 * ph)
            head = (xx - cx) ** 2 + (yy - (gy - 0.87 * ph)) ** 2 < (0.1 * ph + 0.5) ** 2
            shirt = _colour(rng, rng.uniform(0.1, 0.9, 3), 0.05)
            c.paint(legs, PERSON, _colour(rng, (0.2, 0.2, 0.3), 0.05), c.noise(0.05, 30))
            c.paint(body, PERSON, shirt, c.noise(0.1, 30))
            c.paint(head, PERSON, _colour(rng, (0.8, 0.6, 0.5), 0.08), 0.0)
        else:  # car on the road, in its lane
            cx = l_edge + (r_edge - l_edge) * rng.uniform(0.15, 0.85)
            cw = (38 + 14 * rng.random()) * scale + 3
            ch = cw * rng.uniform(0.55, 0.75)
            shadow = (np.abs(xx - cx) < 0.55 * cw) & (np.abs(yy - gy) < 0.06 * ch + 0.5) & (c.label == ROAD)
            c.rgb[shadow] *= 0.45
            body = (np.abs(xx - cx) < 0.5 * cw) & (yy < gy - 0.12 * ch) & (yy > gy - 0.6 * ch)
            taper = 0.32 * cw - 0.1 * cw * (gy - 0.6 * ch - yy) / (0.35 * ch)
            cabin = (np.abs(xx - cx) < taper) & (yy <= gy - 0.6 * ch) & (yy > gy - 0.95 * ch)
            wheels = ((np.abs(np.abs(xx - cx) - 0.3 * cw) < 0.1 * cw) & (yy <= gy) & (yy >= gy - 0.2 * ch))
            paint = _colour(rng, rng.choice([(0.7, 0.1, 0.1), (0.1, 0.2, 0.6), (0.85, 0.85, 0.85),
                                             (0.15, 0.15, 0.15), (0.5, 0.5, 0.55), (0.8, 0.7, 0.2)]), 0.05)
            c.paint(wheels, CAR, (0.08, 0.08, 0.08), 0.0)
            c.paint(body, CAR, paint, c.noise(0.08, 30) + 0.15 * (yy < gy - 0.45 * ch))
            window = cabin & (np.abs(xx - cx) < taper - 1.2 * scale - 0.5) & (yy > gy - 0.9 * ch)
            c.paint(cabin, CAR, paint, c.noise(0.05, 30))
            c.rgb[window] = _colour(rng, (0.25, 0.3, 0.38), 0.05)

    # Lighting and sensor: exposure, colour temperature, light gradient, noise.
    exposure = rng.uniform(0.7, 1.25)
    tint = np.array([1 + rng.normal(0, 0.05), 1.0, 1 + rng.normal(0, 0.05)])
    gradient = 1 + rng.uniform(-0.25, 0.25) * (xx / W - 0.5)
    rgb = c.rgb * exposure * tint[None, None, :] * gradient[..., None]
    rgb = rgb + rng.normal(0, 0.025, rgb.shape)
    return c.label, np.clip(rgb, 0, 1)


def downsample(labels: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2 mean for the photo (then a little noise), the top-left of each block for the mask."""
    h, w = labels.shape[0] // 2, labels.shape[1] // 2
    photo = rgb[: 2 * h, : 2 * w].reshape(h, 2, w, 2, 3).mean(axis=(1, 3))
    return labels[::2, ::2].copy(), photo


def save_mask(labels: np.ndarray, path: Path) -> None:
    img = Image.frombytes("P", labels.shape[::-1], labels.astype(np.uint8).tobytes())
    img.putpalette([v for colour in PALETTE for v in colour])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def make(out: Path, images: int, height: int, width: int, seed: int) -> list[str]:
    for name in ("photos", "masks"):
        shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    ids = []
    for n in range(images):
        rng = np.random.default_rng([seed, n])
        labels, rgb = downsample(*draw_scene(rng, height, width))
        split = "train" if n < images // 2 else "val"
        image_id = f"{split}/{n:04d}"
        save_mask(labels, out / "masks" / f"{image_id}.png")
        photo = out / "photos" / f"{image_id}.png"
        photo.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(photo)
        ids.append(image_id)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make(args.out, args.images, args.height, args.width, args.seed)


if __name__ == "__main__":
    main()
