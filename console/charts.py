"""Server-rendered SVG charts: the geometry is computed here, the template draws it."""

from dataclasses import dataclass

BAR_HEIGHT = 28
BAR_GAP = 12
LABEL_WIDTH = 110  # room for the status names left of the bars
BAR_AREA = 360  # the longest bar's width
VALUE_ROOM = 60  # room for the count right of the bar


@dataclass(frozen=True)
class Bar:
    key: str
    label: str
    value: int
    y: int
    width: int

    @property
    def text_y(self) -> int:
        return self.y + BAR_HEIGHT // 2 + 5

    @property
    def value_x(self) -> int:
        return LABEL_WIDTH + self.width + 8


@dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    width: int = LABEL_WIDTH + BAR_AREA + VALUE_ROOM
    label_width: int = LABEL_WIDTH
    bar_height: int = BAR_HEIGHT

    @property
    def height(self) -> int:
        return len(self.bars) * (BAR_HEIGHT + BAR_GAP)


def bar_chart(values: list[tuple[str, str, int]]) -> BarChart:
    """Horizontal bars of (key, label, value), scaled to the largest (a zero stays empty;
    a non-zero value gets at least a sliver, so it is seen)."""
    top = max((value for _, _, value in values), default=0)
    bars = []
    for index, (key, label, value) in enumerate(values):
        width = round(BAR_AREA * value / top) if top else 0
        bars.append(
            Bar(key, label, value, index * (BAR_HEIGHT + BAR_GAP), max(width, 2 * (value > 0)))
        )
    return BarChart(bars)
