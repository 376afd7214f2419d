"""The app's colours, one place: Okabe–Ito for categories, ColorBrewer scales for values.

Okabe & Ito's eight colours stay apart for the common colour-vision deficiencies (deuteranopia,
protanopia, tritanopia), so a category is never told by a red/green difference alone. Eight colours
are not enough for 11 facets or 20 categories, so a category is a (colour, marker symbol) pair:
``category_style(i)`` walks the colours first, then changes the symbol. The value scales (RdBu, Blues,
Reds, Viridis) are ColorBrewer's and viridis, both readable with those deficiencies.
"""

from __future__ import annotations

# Okabe–Ito, black first; yellow is kept last among the category colours (it is faint on white).
BLACK = "#000000"
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
GREEN = "#009E73"
YELLOW = "#F0E442"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"
GREY = "#999999"  # "inside / no facet / reference": neutral, never a category colour
HEADER_FILL = "#EEEEEE"  # table headers drawn inside a figure (not a data colour)
OKABE_ITO = [BLACK, ORANGE, SKY_BLUE, GREEN, YELLOW, BLUE, VERMILLION, PURPLE]

# Category colours in the order they are handed out (black is kept for trajectories and marks).
CATEGORY = [BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY_BLUE, YELLOW]
SYMBOLS = ["circle", "square", "diamond", "triangle-up", "cross", "x", "triangle-down", "star-square"]

# Meanings used across figures.
FIRES = VERMILLION  # a facet fires / outside the polytope / unsafe
HOLDS = SKY_BLUE  # a facet holds / inside
STEERED = ORANGE
ACCENT = BLUE

# Value scales (continuous, not categories).
DIVERGING = "RdBu_r"
SEQUENTIAL_BLUE = "Blues"
SEQUENTIAL_RED = "Reds"
ORDER_SCALE = "Viridis"
RDBU = ["#2166ac", "#92c5de", "#f7f7f7", "#f4a582", "#b2182b"]  # ColorBrewer RdBu, blue (inside) to red (outside)
SCALES = {DIVERGING, SEQUENTIAL_BLUE, SEQUENTIAL_RED, ORDER_SCALE}

ALL = {c.upper() for c in [*OKABE_ITO, GREY, *RDBU]} | {"#FFFFFF"}


def category_style(i: int) -> tuple[str, str]:
    """The (colour, symbol) of the i-th category: 7 colours × 8 symbols before a pair repeats."""
    return CATEGORY[i % len(CATEGORY)], SYMBOLS[(i // len(CATEGORY)) % len(SYMBOLS)]


def is_palette_colour(colour: str) -> bool:
    return isinstance(colour, str) and colour.upper() in ALL
