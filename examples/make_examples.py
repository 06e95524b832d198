"""Rebuild the example image folders shipped in examples/ (deterministic).

    python examples/make_examples.py

* ``photos/``: 24 crops of three real photographs that Python packages ship: ``china.jpg`` and
  ``flower.jpg`` from scikit-learn (``sklearn/datasets/images``, CC BY 2.0, see README.md) and
  ``grace_hopper.jpg`` from matplotlib (``mpl-data/sample_data``, a U.S. Navy photograph in the
  public domain). Each crop has a hand-written caption.
* ``drawings/``: 24 line drawings rendered here with Pillow (houses, trees, suns, stars, spirals,
  flowers, boats, faces) from a fixed seed, each with a caption.

Both folders use the Hugging Face ``imagefolder`` layout: image files plus a ``metadata.jsonl``
whose ``file_name`` column names each image and whose ``caption`` column describes it.
Needs scikit-learn and matplotlib only to find the source photographs.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SHORT_SIDE = 160

# (source, box in the source image's pixels, caption)
PHOTO_CROPS = [
    ("china", (106, 0, 533, 427), "a tall Chinese pagoda with orange tiled roofs beside a lake, framed by trees"),
    ("china", (120, 0, 440, 320), "an ornate Chinese pagoda with orange tiled roofs against a pale sky"),
    ("china", (150, 0, 330, 180), "the golden finial and curved roofs at the top of a pagoda"),
    ("china", (120, 120, 360, 360), "red pillars and painted eaves of a Chinese tower"),
    ("china", (380, 160, 640, 340), "a calm lake with distant hills under a hazy sky"),
    ("china", (440, 180, 640, 427), "green trees in front of a lake on a sunny day"),
    ("china", (0, 200, 227, 427), "leafy trees and the edge of a red temple wall"),
    ("china", (0, 0, 640, 427), "a summer palace pagoda on a hill above a wide lake"),
    ("flower", (160, 50, 480, 370), "an orange dahlia in full bloom on a dark green background"),
    ("flower", (230, 120, 400, 290), "close-up of the curled petals at the center of a dahlia"),
    ("flower", (110, 0, 537, 427), "a round peach-colored pompon dahlia"),
    ("flower", (0, 0, 220, 300), "blurred dark green leaves in soft light"),
    ("flower", (290, 200, 510, 427), "petals of a peach dahlia with a second flower below"),
    ("flower", (180, 80, 440, 340), "a peach-colored dahlia with tightly packed petals"),
    ("flower", (440, 0, 640, 300), "out-of-focus green foliage behind a garden flower"),
    ("flower", (0, 0, 640, 427), "a single orange dahlia flower photographed in a garden"),
    ("grace_hopper", (140, 60, 400, 320), "portrait of an elderly woman with glasses and a naval officer's cap"),
    ("grace_hopper", (0, 0, 512, 512), "portrait of an elderly naval officer in front of an American flag"),
    ("grace_hopper", (0, 0, 160, 400), "stars and stripes of an American flag"),
    ("grace_hopper", (300, 380, 512, 560), "service ribbons on a dark navy uniform"),
    ("grace_hopper", (150, 0, 400, 150), "a white naval officer's cap with a gold badge"),
    ("grace_hopper", (100, 100, 450, 500), "an elderly woman in a dark navy uniform and white collar"),
    ("grace_hopper", (0, 88, 512, 600), "official portrait of Rear Admiral Grace Hopper in uniform"),
    ("grace_hopper", (180, 150, 360, 280), "close-up of a face with large glasses"),
]


def source_photos() -> dict[str, Path]:
    import matplotlib
    import sklearn.datasets

    sk = Path(sklearn.datasets.__file__).parent / "images"
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    return {"china": sk / "china.jpg", "flower": sk / "flower.jpg", "grace_hopper": mpl / "grace_hopper.jpg"}


def make_photos(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    sources = {name: Image.open(path).convert("RGB") for name, path in source_photos().items()}
    rows = []
    for i, (name, box, caption) in enumerate(PHOTO_CROPS):
        crop = sources[name].crop(box)
        scale = SHORT_SIDE / min(crop.size)
        crop = crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.LANCZOS)
        file_name = f"{name}_{i:02d}.jpg"
        crop.save(out / file_name, "JPEG", quality=82, optimize=True)
        rows.append({"file_name": file_name, "caption": caption})
    _write_metadata(out, rows)


# -- drawings ------------------------------------------------------------------------------------

def _house(d, r, s):
    x0, y0 = r.randint(40, 90), r.randint(150, 190)
    w, h = r.randint(150, 220), r.randint(110, 150)
    d.rectangle([x0, y0, x0 + w, y0 + h], outline=s["ink"], width=s["width"])
    d.line([x0 - 15, y0, x0 + w // 2, y0 - r.randint(70, 110), x0 + w + 15, y0], fill=s["ink"], width=s["width"],
           joint="curve")
    dw = w // 4
    d.rectangle([x0 + w // 2 - dw // 2, y0 + h - 70, x0 + w // 2 + dw // 2, y0 + h], outline=s["ink"], width=s["width"])
    d.rectangle([x0 + 18, y0 + 25, x0 + 18 + dw, y0 + 25 + dw], outline=s["ink"], width=s["width"])
    return "a simple line drawing of a house with a pointed roof, a door and a window"


def _tree(d, r, s):
    cx, base = r.randint(150, 230), 350
    top = r.randint(170, 220)
    d.line([cx - 12, base, cx - 10, top], fill=s["ink"], width=s["width"])
    d.line([cx + 12, base, cx + 10, top], fill=s["ink"], width=s["width"])
    for _ in range(r.randint(5, 8)):
        rx, ry = cx + r.randint(-70, 70), top - r.randint(0, 110)
        rad = r.randint(35, 60)
        d.arc([rx - rad, ry - rad, rx + rad, ry + rad], 0, 360, fill=s["ink"], width=s["width"])
    return "a line drawing of a tree with a round leafy crown"


def _sun(d, r, s):
    cx, cy, rad = r.randint(160, 220), r.randint(160, 220), r.randint(50, 75)
    d.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], outline=s["ink"], width=s["width"])
    n = r.randint(8, 14)
    for k in range(n):
        a = 2 * math.pi * k / n
        d.line([cx + (rad + 15) * math.cos(a), cy + (rad + 15) * math.sin(a),
                cx + (rad + 55) * math.cos(a), cy + (rad + 55) * math.sin(a)], fill=s["ink"], width=s["width"])
    return "a line drawing of a shining sun with straight rays"


def _star(d, r, s):
    cx, cy = r.randint(170, 210), r.randint(170, 210)
    outer, inner, n = r.randint(120, 160), r.randint(45, 70), r.choice([5, 5, 6, 7])
    pts = []
    for k in range(2 * n):
        a = math.pi * k / n - math.pi / 2
        rad = outer if k % 2 == 0 else inner
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    d.line(pts + [pts[0]], fill=s["ink"], width=s["width"], joint="curve")
    return f"an outline drawing of a {n}-pointed star"


def _spiral(d, r, s):
    cx, cy = r.randint(170, 210), r.randint(170, 210)
    turns, growth = r.uniform(3.0, 5.0), r.uniform(5.0, 7.5)
    pts = [(cx + growth * t * math.cos(t), cy + growth * t * math.sin(t))
           for t in (i * 0.05 for i in range(int(turns * 2 * math.pi / 0.05)))]
    d.line(pts, fill=s["ink"], width=s["width"], joint="curve")
    return "a hand-drawn spiral line"


def _flower(d, r, s):
    cx, cy = r.randint(170, 210), r.randint(130, 170)
    n, petal = r.randint(5, 8), r.randint(35, 50)
    for k in range(n):
        a = 2 * math.pi * k / n
        px, py = cx + petal * 1.2 * math.cos(a), cy + petal * 1.2 * math.sin(a)
        d.ellipse([px - petal * 0.6, py - petal * 0.6, px + petal * 0.6, py + petal * 0.6], outline=s["ink"],
                  width=s["width"])
    d.ellipse([cx - 20, cy - 20, cx + 20, cy + 20], outline=s["ink"], width=s["width"])
    d.line([cx, cy + petal * 1.8, cx + r.randint(-20, 20), 370], fill=s["ink"], width=s["width"])
    return "a doodle of a flower with round petals on a long stem"


def _boat(d, r, s):
    y = r.randint(230, 270)
    x0, x1 = r.randint(50, 90), r.randint(290, 330)
    d.line([x0, y, x1, y, x1 - 40, y + 50, x0 + 40, y + 50, x0, y], fill=s["ink"], width=s["width"])
    mast = (x0 + x1) // 2
    d.line([mast, y, mast, y - 170], fill=s["ink"], width=s["width"])
    d.line([mast, y - 160, mast + 90, y - 15, mast, y - 15], fill=s["ink"], width=s["width"])
    for k in range(3):
        yy = y + 70 + 18 * k
        wave = [(x, yy + 6 * math.sin(x / 15.0 + k)) for x in range(20, 380, 4)]
        d.line(wave, fill=s["ink"], width=max(2, s["width"] - 2))
    return "a line drawing of a sailing boat on wavy water"


def _face(d, r, s):
    cx, cy, rad = r.randint(180, 200), r.randint(180, 200), r.randint(120, 150)
    d.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], outline=s["ink"], width=s["width"])
    ex = rad // 3
    for sx in (-1, 1):
        eye = (cx + sx * ex, cy - 40)
        d.ellipse([eye[0] - 12, eye[1] - 12, eye[0] + 12, eye[1] + 12], outline=s["ink"], width=s["width"])
    d.arc([cx - rad // 2, cy - 10, cx + rad // 2, cy + rad // 2 + 20], 20, 160, fill=s["ink"], width=s["width"])
    return "a simple drawing of a smiling face"


DRAWERS = [_house, _tree, _sun, _star, _spiral, _flower, _boat, _face]
INKS = [(20, 20, 20), (30, 60, 160), (170, 40, 40), (20, 110, 60)]


def make_drawings(out: Path, seed: int = 7) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = []
    for i in range(24):
        draw_fn = DRAWERS[i % len(DRAWERS)]
        style = {"ink": rng.choice(INKS), "width": rng.randint(5, 9)}
        canvas = Image.new("RGB", (400, 400), (255, 255, 255))   # drawn at 2.5x, then downsampled (smooth lines)
        caption = draw_fn(ImageDraw.Draw(canvas), rng, style)
        small = canvas.resize((SHORT_SIDE, SHORT_SIDE), Image.LANCZOS).quantize(colors=16)
        file_name = f"{draw_fn.__name__.strip('_')}_{i:02d}.png"
        small.save(out / file_name, "PNG", optimize=True)
        rows.append({"file_name": file_name, "caption": caption})
    _write_metadata(out, rows)


def _write_metadata(out: Path, rows: list[dict]) -> None:
    with open(out / "metadata.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    make_photos(HERE / "photos")
    make_drawings(HERE / "drawings")
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"examples written to {HERE} ({total / 1024:.0f} KiB in all)")
