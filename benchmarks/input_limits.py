"""The real films behind the blank/too-small/too-thin limits of ``xscreen/runtime/_degenerate.py``.

    nice -n 10 .venv/bin/python benchmarks/input_limits.py            # every film of cxr3, nih, fullres

For every real frontal film under ``/work/shared/data/{cxr3,nih,fullres}`` (``--data`` to change the root):
its size as decoded (EXIF orientation applied), its aspect ratio (long side / short side) and the pixel
standard deviation the blank check measures (the film decoded and squashed to the bundled model's
224x224, before any JPEG round trip). Reports the extremes per folder and how many films the current
limits would refuse (it must be 0). Writes ``benchmarks/results/input_limits.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from xscreen.runtime._decode import decode_radiograph, image_size
from xscreen.runtime._degenerate import (
    MAX_ASPECT_RATIO,
    MIN_PIXEL_STD,
    MIN_SIDE,
    blank_reason,
    pixel_std,
    shape_reason,
)

FOLDERS = ("cxr3", "nih", "fullres")
SIZE = (224, 224)
RESULTS = Path(__file__).parent / "results"


def measure(folder: Path) -> dict:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    sides, longest, pixels, aspects, stds, refused, lowest = [], [], [], [], [], [], []
    for path in files:
        width, height = image_size(path)
        grey = decode_radiograph(path, SIZE)
        std = pixel_std(grey)
        sides.append(min(width, height))
        longest.append(max(width, height))
        pixels.append(width * height)
        aspects.append(max(width, height) / min(width, height))
        stds.append(std)
        lowest.append((std, path.name))
        reason = shape_reason(width, height) or blank_reason(grey)
        if reason:
            refused.append((str(path), reason))
    lowest.sort()
    return {
        "films": len(files),
        "smallest_side_px": int(min(sides)),
        "largest_side_px": int(max(longest)),
        "most_pixels": int(max(pixels)),
        "max_aspect_ratio": round(float(max(aspects)), 3),
        "min_pixel_std": round(float(min(stds)), 2),
        "pixel_std_p01": round(float(np.percentile(stds, 1)), 2),
        "median_pixel_std": round(float(np.median(stds)), 2),
        "lowest_std_films": [(round(s, 2), name) for s, name in lowest[:5]],
        "refused_by_current_limits": len(refused),
        "refused": refused[:20],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    args = parser.parse_args()
    figures = {"limits": {"min_side_px": MIN_SIDE, "max_aspect_ratio": MAX_ASPECT_RATIO,
                          "min_pixel_std": MIN_PIXEL_STD},
               "folders": {name: measure(args.data / name) for name in FOLDERS if (args.data / name).is_dir()}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "input_limits.json").write_text(json.dumps(figures, indent=2) + "\n")
    lines = ["# Real films against the blank / too-small / too-thin limits", "",
             "`nice -n 10 .venv/bin/python benchmarks/input_limits.py` (std: pixel standard deviation of the film "
             "decoded at 224x224, 0..255).", "",
             f"Limits: smallest side >= {MIN_SIDE} px, long/short side <= {MAX_ASPECT_RATIO}, "
             f"pixel std >= {MIN_PIXEL_STD}.", "",
             "| folder | films | smallest side (px) | largest aspect ratio | lowest std | 1st percentile std "
             "| median std | largest side (px) | most pixels | refused |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, f in figures["folders"].items():
        lines.append(f"| {name} | {f['films']:,} | {f['smallest_side_px']} | {f['max_aspect_ratio']} | "
                     f"{f['min_pixel_std']} | {f['pixel_std_p01']} | {f['median_pixel_std']} | "
                     f"{f['largest_side_px']} | {f['most_pixels']:,} | {f['refused_by_current_limits']} |")
    (RESULTS / "input_limits.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
