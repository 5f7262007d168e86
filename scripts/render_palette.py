"""Render the digit scenes' stored and display palettes side by side into docs/palette.png (no training).

    .venv/bin/python scripts/render_palette.py [out.png]
"""
import sys

from reprokit.viz.palette import render_swatches

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "docs/palette.png"
    print(render_swatches(out, ["background", *(f"digit {d}" for d in range(10))]))
