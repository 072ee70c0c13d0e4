"""The training progress bar: steps done of total, loss, best validation MSE and ETA (rich)."""

from __future__ import annotations


class TrainingProgress:
    """A rich progress bar with loss, best validation MSE and ETA (a no-op when disabled)."""

    def __init__(self, enabled: bool, total: int, done: int, label: str):
        self.enabled, self.total, self.done, self.label = enabled, total, done, label

    def __enter__(self):
        if not self.enabled:
            return lambda *a: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._p = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("loss {task.fields[loss]:.4f}  best val {task.fields[val]:.4f}"),
                           TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=False)
        self._p.start()
        task = self._p.add_task(self.label, total=self.total, completed=self.done, loss=float("nan"), val=float("nan"))

        def update(step: int, loss: float, val: float) -> None:
            self._p.update(task, completed=step, loss=loss, val=val)

        return update

    def __exit__(self, *exc):
        if self.enabled:
            self._p.stop()
        return False
