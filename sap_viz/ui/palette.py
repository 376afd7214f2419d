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
# Relative to a position's own boundary (value − boundary): white just below it, blue further inside; from the boundary
# on, red that starts at least half saturated (HSV) and darkens further outside, so no cell below is red and none at or
# above is pale. ColorBrewer RdBu's ends.
INSIDE_SCALE = ["#2166ac", "#92c5de", "#f7f7f7"]  # far inside → just inside
OUTSIDE_SCALE = ["#d6604d", "#b2182b", "#67001f"]  # at the boundary → far outside
# The answer check's own scale (its logit minus its threshold): ColorBrewer PuOr, purple (harmless) to orange (harmful).
ANSWER_CHECK_SCALE = ["#542788", "#998ec3", "#f7f7f7", "#f1a340", "#b35806"]
SCALES = {DIVERGING, SEQUENTIAL_BLUE, SEQUENTIAL_RED, ORDER_SCALE}

ALL = {c.upper() for c in [*OKABE_ITO, GREY, *RDBU, *INSIDE_SCALE, *OUTSIDE_SCALE, *ANSWER_CHECK_SCALE]} | {"#FFFFFF"}


def category_style(i: int) -> tuple[str, str]:
    """The (colour, symbol) of the i-th category: 7 colours × 8 symbols before a pair repeats."""
    return CATEGORY[i % len(CATEGORY)], SYMBOLS[(i // len(CATEGORY)) % len(SYMBOLS)]


def is_palette_colour(colour: str) -> bool:
    return isinstance(colour, str) and colour.upper() in ALL


def _mix(stops: list[str], t: float) -> str:
    """The colour ``t`` (0..1) of the way along ``stops``, linearly between neighbours."""
    t = min(1.0, max(0.0, t)) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    a, b = (tuple(int(c[k:k + 2], 16) for k in (1, 3, 5)) for c in stops[i:i + 2])
    return "#" + "".join(f"{round(x + (y - x) * (t - i)):02x}" for x, y in zip(a, b, strict=True))


def boundary_colour(distance: float, outside: float, inside: float) -> str:
    """A position's colour from its distance to its own boundary (value − boundary): red from 0 on (``outside``: the
    distance of the darkest red), blue below (``inside``: the distance, as a positive number, of the darkest blue)."""
    if distance >= 0:
        return _mix(OUTSIDE_SCALE, distance / max(outside, 1e-9))
    return _mix(INSIDE_SCALE, 1 + distance / max(inside, 1e-9))


def ink_on(background: str) -> str:
    """Text colour for a ``#rrggbb`` background: white or black, whichever contrasts more. One of the two always
    reaches WCAG AA (≥ 4.5; the worst case, mid-grey at luminance 0.18, gives 4.58 with both); a softer dark grey
    would not on the mid blues and reds of the boundary scales."""
    def linear(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(int(background[k:k + 2], 16)) for k in (1, 3, 5))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    # contrast with white is 1.05 / (L + 0.05), with black (L + 0.05) / 0.05: pick the larger
    return "#ffffff" if 1.05 / (luminance + 0.05) >= (luminance + 0.05) / 0.05 else BLACK


def boundary_colorscale(zmin: float, zmax: float) -> list[list]:
    """Plotly's colorscale for ``boundary_colour`` over [zmin, zmax] (zmin < 0 < zmax): a jump from white to a
    half-saturated red exactly at the boundary."""
    at = -zmin / (zmax - zmin)
    return [[0.0, INSIDE_SCALE[0]], [at / 2, INSIDE_SCALE[1]], [at, INSIDE_SCALE[2]], [at, OUTSIDE_SCALE[0]],
            [at + (1 - at) / 2, OUTSIDE_SCALE[1]], [1.0, OUTSIDE_SCALE[2]]]


def boundary_range(distances) -> tuple[float, float]:
    """(outside, inside) ends of the boundary scale for these distances: the largest distance at or above the boundary
    (so the firing cell is the darkest red when it is the only one), and the 98th percentile of those below it."""
    values = [float(d) for d in distances if d is not None and d == d]
    above = [d for d in values if d >= 0]
    below = sorted(-d for d in values if d < 0)
    outside = max(max(above, default=0.0), 1e-3)
    inside = below[min(len(below) - 1, int(0.98 * len(below)))] if below else 1.0
    return outside, max(inside, 1e-3)
