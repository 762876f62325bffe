"""Progress while a sync runs: per object, the records read out of the total the CRM reported
(when it reports one), the rate, and the time left; without a total, the records and the rate."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from mirror import Page, PageOutcome

ProgressCallback = Callable[[str, PageOutcome, Page], None]


class RecordsColumn(ProgressColumn):
    """``1,200/5,000 records, 310/s`` (``1,200 records, 310/s`` while the total is unknown)."""

    def render(self, task: Task) -> Text:
        """The records read so far, out of the total when known, and the rate."""
        done = f"{task.completed:,.0f}"
        if task.total is not None:
            done += f"/{task.total:,.0f}"
        rate = f", {task.speed:,.0f}/s" if task.speed else ""
        return Text(f"{done} records, {task.fields['pages']} pages{rate}")


@contextmanager
def sync_progress(console: Console) -> Iterator[ProgressCallback]:
    """A callback for ``Mirror.sync(progress=...)`` that draws one bar per object."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=None),
        RecordsColumn(),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
    )
    tasks: dict[str, object] = {}
    with Progress(*columns, console=console, transient=False) as bars:

        def advance(name: str, outcome: PageOutcome, page: Page) -> None:
            if name not in tasks:
                tasks[name] = bars.add_task(name, total=page.total, pages=0)
            task_id = tasks[name]
            task = next(t for t in bars.tasks if t.id == task_id)
            read = len(page.records) + len(page.tombstones) + len(page.rejects)
            total = task.total
            if total is None and page.total is not None:
                total = page.total
            if total is not None:
                total = max(total, task.completed + read)
            bars.update(
                task.id,
                advance=read,
                total=total,
                pages=task.fields["pages"] + 1,
            )

        yield advance
