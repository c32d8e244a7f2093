"""Time-axis arithmetic of the editor: zoom, scroll, fit and zoom-to-selection (no Qt here).

Every function maps a visible time range ``(x0, x1)`` in seconds to a new one, clamped so that
it lies within ``[0, duration]``, is at least ``min_width`` seconds wide (the views allow about
20 samples across the screen at most) and at most the whole clip. The editor's keys and wheel
follow Audacity: Ctrl+1 zooms in by 2, Ctrl+3 zooms out by 2, Ctrl+E zooms to the selection,
Ctrl+F fits the clip, Ctrl+wheel zooms about the pointer (one notch = a factor of 2), the plain
or Shift wheel scrolls (one notch = :data:`SCROLL_PER_NOTCH` of the visible width).
"""

from __future__ import annotations

ZOOM_STEP = 2.0  # factor per Ctrl+1 / Ctrl+3 and per wheel notch
SCROLL_PER_NOTCH = 0.1  # fraction of the visible width per wheel notch
WHEEL_NOTCH = 120  # Qt's angle delta of one wheel notch (eighths of a degree)
MIN_DURATION = 1e-3  # an empty clip still has a drawable axis

Range = tuple[float, float]


def clamp_range(x0: float, x1: float, duration: float, min_width: float = 0.0) -> Range:
    """``(x0, x1)`` moved and resized (keeping its centre where possible) to fit the clip.

    The result satisfies ``0 <= x0 < x1 <= max(duration, MIN_DURATION)`` and
    ``min(min_width, total) <= x1 - x0 <= total``.
    """
    total = max(float(duration), MIN_DURATION)
    width = min(max(float(x1) - float(x0), float(min_width), 1e-12), total)
    if x1 - x0 < width:  # grow about the centre
        centre = 0.5 * (x0 + x1)
        x0 = centre - 0.5 * width
    x0 = min(max(float(x0), 0.0), total - width)
    return x0, x0 + width


def zoom_range(
    view: Range, factor: float, anchor: float | None, duration: float, min_width: float = 0.0
) -> Range:
    """Zoom in by ``factor`` (> 1 narrows the view, < 1 widens it) keeping ``anchor`` in place.

    ``anchor`` (seconds) stays at the same screen position; ``None`` zooms about the centre.
    """
    if factor <= 0:
        raise ValueError(f"zoom factor must be positive, got {factor}")
    x0, x1 = view
    if anchor is None:
        anchor = 0.5 * (x0 + x1)
    width = x1 - x0
    total = max(float(duration), MIN_DURATION)
    new_width = min(max(width / factor, min_width), total)
    frac = (anchor - x0) / width if width > 0 else 0.5
    frac = min(max(frac, 0.0), 1.0)
    new_x0 = anchor - frac * new_width
    return clamp_range(new_x0, new_x0 + new_width, duration, min_width)


def scroll_range(view: Range, fraction: float, duration: float) -> Range:
    """Scroll by ``fraction`` of the visible width (positive: later in time), clamped."""
    x0, x1 = view
    shift = fraction * (x1 - x0)
    return clamp_range(x0 + shift, x1 + shift, duration)


def wheel_zoom_factor(angle_delta: int) -> float:
    """Zoom factor for a Ctrl+wheel angle delta: :data:`ZOOM_STEP` per notch, away = zoom in."""
    return float(ZOOM_STEP ** (angle_delta / WHEEL_NOTCH))


def wheel_scroll_fraction(angle_delta: int) -> float:
    """Scroll fraction for a wheel angle delta; turning the wheel away scrolls back in time."""
    return -SCROLL_PER_NOTCH * angle_delta / WHEEL_NOTCH


def fit_range(duration: float) -> Range:
    """The whole clip."""
    return 0.0, max(float(duration), MIN_DURATION)


def selection_range(start: float, end: float, duration: float, min_width: float = 0.0) -> Range:
    """The view that shows exactly the selection ``[start, end]`` seconds (Ctrl+E)."""
    return clamp_range(min(start, end), max(start, end), duration, min_width)


def follow_playhead(view: Range, position: float, duration: float) -> Range:
    """Page the view so that the playhead at ``position`` stays visible (Audacity's paging).

    When the playhead leaves the view, the view jumps so that the playhead is at its left edge;
    otherwise the view is returned unchanged.
    """
    x0, x1 = view
    if x0 <= position <= x1:
        return view
    width = x1 - x0
    return clamp_range(position, position + width, duration)


def scrollbar_units(view: Range, duration: float, *, per_page: int = 1000) -> tuple[int, int, int]:
    """``(maximum, page_step, value)`` for a QScrollBar over the clip (minimum is 0).

    One page (the visible width) is ``per_page`` units unless the clip is so long relative to the
    view that the total would overflow a 32-bit int; then a page gets fewer units.
    """
    x0, x1 = view
    width = max(x1 - x0, 1e-12)
    total = max(float(duration), MIN_DURATION)
    pages = max(total / width, 1.0)
    unit = min(float(per_page), 1e9 / pages)  # units per page
    maximum = max(0, round((total - width) / width * unit))
    value = min(max(0, round(x0 / width * unit)), maximum)
    return maximum, max(1, round(unit)), value


def scrollbar_to_start(value: int, view: Range, duration: float, *, per_page: int = 1000) -> float:
    """Inverse of :func:`scrollbar_units`: the view start (seconds) for a scroll bar value."""
    x0, x1 = view
    width = max(x1 - x0, 1e-12)
    total = max(float(duration), MIN_DURATION)
    pages = max(total / width, 1.0)
    unit = min(float(per_page), 1e9 / pages)
    return min(max(0.0, value / unit * width), max(0.0, total - width))
