"""A virtual table of data rows: it knows how many rows there are, renders only the lines on
screen, and asks for the rows it does not have (``NeedRows``) — so a million-row file scrolls
without ever being loaded. The owner answers with ``put_rows`` from a worker thread's results.

Each line is ✓ and a preview, ✗ and the row's problem, or ! and its warning (special-token text, from
the token statistics: ``set_warnings``, by line/record number) before the preview.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

CACHE_ROWS = 4000


@dataclass(frozen=True)
class RowLine:
    index: int  # 0-based row
    where: int  # line or record number shown to people
    ok: bool
    text: str  # a preview of the row, or its problem


class RowTable(ScrollView, can_focus=True):
    """Rows of a data file, one per line: where, ✓/✗, a preview or the problem."""

    DEFAULT_CSS = """
    RowTable { background: $surface; scrollbar-size-vertical: 1; overflow-x: hidden; }
    RowTable:focus { background-tint: $foreground 3%; }
    RowTable > .row-table--cursor { background: $block-cursor-blurred-background; }
    RowTable:focus > .row-table--cursor { background: $block-cursor-background; color: $block-cursor-foreground; text-style: bold; }
    RowTable > .row-table--where { color: $text-muted; }
    RowTable > .row-table--ok { color: $success; }
    RowTable > .row-table--bad { color: $error; }
    RowTable > .row-table--pending { color: $text-disabled; }
    RowTable > .row-table--warning { color: $warning; }
    """
    COMPONENT_CLASSES = {
        "row-table--cursor", "row-table--where", "row-table--ok", "row-table--bad", "row-table--pending",
        "row-table--warning",
    }
    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First row", show=False),
        Binding("end", "jump(-1)", "Last row", show=False),
    ]

    cursor: reactive[int] = reactive(0, always_update=False)

    class NeedRows(Message):
        """Rows [start, start + count) are on screen but not loaded."""

        def __init__(self, table: "RowTable", start: int, count: int) -> None:
            super().__init__()
            self.table, self.start, self.count = table, start, count

    class Highlighted(Message):
        def __init__(self, table: "RowTable", index: int) -> None:
            super().__init__()
            self.table, self.index = table, index

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.row_count = 0
        self.where_width = 4
        self._rows: OrderedDict[int, RowLine] = OrderedDict()
        self._asked: tuple[int, int] | None = None
        self.warnings: dict[int, str] = {}  # line/record number -> a short warning

    # --- data in ------------------------------------------------------------------------------
    def reset(self) -> None:
        self._rows.clear()
        self._asked = None
        self.warnings = {}
        self.row_count = 0
        self.set_reactive(RowTable.cursor, 0)
        self.scroll_to(0, 0, animate=False, immediate=True)
        self._resize()
        self.refresh()

    def set_row_count(self, count: int, where_max: int | None = None) -> None:
        if count == self.row_count and where_max is None:
            return
        first = self.row_count == 0 and count > 0
        self.row_count = count
        if where_max is not None:
            self.where_width = max(4, len(str(where_max)))
        self._resize()
        self.refresh()
        self._ask_visible()
        if first:
            self.post_message(self.Highlighted(self, self.cursor))

    def put_rows(self, rows: list[RowLine]) -> None:
        changed = False
        for row in rows:
            self._rows[row.index] = row
            self._rows.move_to_end(row.index)
            if len(str(row.where)) > self.where_width:
                self.where_width = len(str(row.where))
            changed = True
        while len(self._rows) > CACHE_ROWS:
            self._rows.popitem(last=False)
        if changed:
            self._asked = None
            self.refresh()

    def set_warnings(self, warnings: dict[int, str]) -> None:
        """Short warnings for rows that are usable but deserve a look, by line/record number."""
        if warnings != self.warnings:
            self.warnings = dict(warnings)
            self.refresh()

    def row(self, index: int) -> RowLine | None:
        return self._rows.get(index)

    # --- geometry -----------------------------------------------------------------------------
    def _resize(self) -> None:
        self.virtual_size = Size(max(1, self.scrollable_content_region.width), self.row_count)

    def on_resize(self, event: events.Resize) -> None:
        self._resize()
        self._ask_visible()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._ask_visible()

    def visible_range(self) -> tuple[int, int]:
        top = int(self.scroll_offset.y)
        height = max(1, self.scrollable_content_region.height)
        return top, min(self.row_count, top + height)

    def _ask_visible(self) -> None:
        if not self.row_count:
            return
        top, bottom = self.visible_range()
        missing = [i for i in range(top, bottom) if i not in self._rows]
        if not missing:
            return
        # ask for a little more than the screen so small scrolls need nothing
        height = bottom - top
        start = max(0, missing[0] - height)
        count = min(self.row_count, missing[-1] + height + 1) - start
        if self._asked == (start, count):
            return
        self._asked = (start, count)
        self.post_message(self.NeedRows(self, start, count))

    # --- drawing ------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        index = int(self.scroll_offset.y) + y
        base = self.rich_style
        if index >= self.row_count:
            return Strip.blank(width, base)
        row = self._rows.get(index)
        where_style = self.get_component_rich_style("row-table--where")
        segments: list[Segment]
        if row is None:
            segments = [
                Segment(f"{'':>{self.where_width}}  ", base + where_style),
                Segment("…", base + self.get_component_rich_style("row-table--pending")),
            ]
        else:
            warning = self.warnings.get(row.where) if row.ok else None
            mark, mark_style = ("✓", "row-table--ok") if row.ok else ("✗", "row-table--bad")
            text_style = base if row.ok else base + self.get_component_rich_style("row-table--bad")
            segments = [Segment(f"{row.where:>{self.where_width}} ", base + where_style)]
            if warning:
                warn_style = base + self.get_component_rich_style("row-table--warning")
                segments += [Segment("!", warn_style), Segment(f" {warning} ·", warn_style)]
            else:
                segments.append(Segment(mark, base + self.get_component_rich_style(mark_style)))
            segments.append(Segment(" " + row.text, text_style))
        strip = Strip(segments).crop_extend(0, width, base)
        if index == self.cursor:
            cursor: Style = self.get_component_rich_style("row-table--cursor")
            strip = strip.apply_style(cursor)
        return strip

    # --- moving -------------------------------------------------------------------------------
    def watch_cursor(self, old: int, new: int) -> None:
        self.refresh_line_at(old)
        self.refresh_line_at(new)
        self.scroll_to_region(Region(0, new, 1, 1), animate=False, immediate=True)
        self.post_message(self.Highlighted(self, new))

    def refresh_line_at(self, index: int) -> None:
        y = index - int(self.scroll_offset.y)
        if 0 <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, self.row_count - 1)) if self.row_count else 0

    def action_move(self, delta: int) -> None:
        self.cursor += delta

    def action_page(self, direction: int) -> None:
        self.cursor += direction * max(1, self.scrollable_content_region.height - 1)

    def action_jump(self, where: int) -> None:
        self.cursor = where if where >= 0 else self.row_count - 1

    def go_to(self, index: int) -> None:
        self.cursor = index
        top = max(0, index - self.scrollable_content_region.height // 3)
        self.scroll_to(y=top, animate=False, immediate=True)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = int(self.scroll_offset.y) + offset.y
        if 0 <= index < self.row_count:
            self.cursor = index
        self.focus()
