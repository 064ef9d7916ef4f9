"""Shared pieces of the widgets: layer checks and the worker-driving container."""

import logging
import threading
from collections.abc import Callable
from typing import Any

import napari
import numpy as np
from magicgui.widgets import (
    Container,
    Label,
    ProgressBar,
    PushButton,
)
from napari.utils.notifications import (
    notification_manager,
    show_error,
    show_info,
    show_warning,
)
from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QSizePolicy


def _layer_scale(layer: Any) -> tuple[float, ...]:
    return tuple(float(s) for s in layer.scale[-layer.data.ndim:])


def _grey_data(layer: Any, task: str) -> np.ndarray | None:
    """The layer's array when it is a grey 2D/3D image, else None after telling the user why."""
    if layer is None:
        show_info("Open an image first.")
        return None
    data = np.asarray(layer.data)
    if data.ndim not in (2, 3) or getattr(layer, "rgb", False):
        show_error(f"napari-brainseg: {task} needs a grey 2D or 3D image; '{layer.name}' has "
                   f"shape {data.shape}.")
        return None
    return data


def _current_index(viewer: napari.viewer.Viewer, layer: Any, axis: int = 0) -> int:
    """Index of the slice shown for ``layer`` along ``axis`` (data coordinates)."""
    point = layer.world_to_data(viewer.dims.point[-layer.ndim:])
    return int(np.clip(round(float(point[axis])), 0, layer.data.shape[axis] - 1))


#: Most warnings one run shows as notifications (a batch of bad files would flood the viewer).
MAX_NOTIFIED = 3


class _CollectWarnings(logging.Handler):
    """Keep the package's warnings logged by one thread, to show them as notifications.

    The core logs what a user must act on (one patient only, values replaced, images left out);
    in napari nobody reads the terminal, so the widget repeats it in the viewer.
    """

    def __init__(self, thread: int | None = None) -> None:
        super().__init__(logging.WARNING)
        self.thread = thread
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread and (msg := record.getMessage()) not in self.messages:
            self.messages.append(msg)

    def __enter__(self) -> "_CollectWarnings":
        logging.getLogger("napari_brainseg").addHandler(self)
        return self

    def __exit__(self, *_: Any) -> None:
        logging.getLogger("napari_brainseg").removeHandler(self)

    def notify(self) -> None:
        """Show what was collected (at most :data:`MAX_NOTIFIED`) and forget it."""
        msgs, self.messages = self.messages, []
        for msg in msgs[:MAX_NOTIFIED]:
            show_warning(f"napari-brainseg: {msg}")
        if len(msgs) > MAX_NOTIFIED:
            show_warning(f"napari-brainseg: {len(msgs) - MAX_NOTIFIED} more warning(s); see "
                         "the status line and the log")


class _Failed:
    """A job that stopped on an expected error (returned instead of raised)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _StopWhenClosed(QObject):
    """Cancel a widget's worker when the widget is closed or taken out of its dock.

    napari's dock "x" button un-parents the inner widget (``remove_dock_widget``) rather than
    closing it, so both a Close event and a change to no parent count as closing.
    """

    def __init__(self, widget: "_WorkerWidget") -> None:
        super().__init__()
        self._widget = widget

    def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 (Qt's name)
        kind = event.type()
        if kind == QEvent.Type.Close or (kind == QEvent.Type.ParentChange
                                         and obj.parent() is None):
            self._widget.cancel()
        return False


class _WorkerWidget(Container):
    """A container with Run/Cancel buttons, a progress bar and a status line for one worker.

    ``make_job()`` returns ``(generator, on_done)`` or ``(generator, on_done, on_progress)``, or
    None after telling the user why nothing can run.
    """

    def __init__(self, viewer: napari.viewer.Viewer, run_text: str,
                 make_job: Callable[[], Any]) -> None:
        super().__init__()
        self.viewer = viewer
        self._make_job = make_job
        self._worker: Any = None
        self._warnings = _CollectWarnings()
        self.run_button = PushButton(text=run_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1, label="progress")
        self.status = Label(value="")
        # A long status (a model's file name, an error) wraps instead of widening the tab past
        # its scroll area, which hid the buttons and cut the status off.
        self.status.native.setWordWrap(True)
        self.status.native.setSizePolicy(QSizePolicy.Policy.Ignored,
                                         QSizePolicy.Policy.Preferred)
        self.run_button.changed.connect(self._start)
        self.cancel_button.changed.connect(self.cancel)
        self._close_watch = _StopWhenClosed(self)
        self.native.installEventFilter(self._close_watch)

    def _controls(self) -> list[Any]:
        return [Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                          labels=False), self.progress, self.status]

    def _start(self) -> None:
        from napari.qt.threading import create_worker

        seen = len(notification_manager.records)
        with _CollectWarnings(threading.get_ident()) as setup:
            job = self._make_job()
        said = [str(n.message) for n in notification_manager.records[seen:]]
        setup.notify()
        if job is None:
            # The reason was a notification, which fades: the status line keeps it, so the
            # last run's "done: ..." is not taken for the result of this click.
            self.status.value = (said[-1].removeprefix("napari-brainseg: ") if said
                                 else "not started")
            self.progress.value = 0
            return
        gen, on_done, *rest = job
        on_progress = rest[0] if rest else self._on_progress
        self._warnings = _CollectWarnings()

        def run() -> Any:
            # Expected failures (bad file, full disk, out of memory) end the job with a
            # notification; only a bug reaches napari's error relay with its traceback.
            self._warnings.thread = threading.get_ident()
            with self._warnings:
                try:
                    return (yield from gen)
                except (ValueError, OSError, MemoryError) as exc:
                    return _Failed(exc)

        def finish(result: Any) -> None:
            if isinstance(result, _Failed):
                self._on_error(result.error)
            else:
                on_done(result)

        self._worker = create_worker(run)
        self._worker.yielded.connect(on_progress)
        self._worker.returned.connect(finish)
        self._worker.errored.connect(self._on_error)
        self._worker.finished.connect(self._on_finished)
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = "running..."
        self._worker.start()

    def _on_progress(self, step: tuple[int, int]) -> None:
        done, total = step
        self.progress.max = max(int(total), 1)
        self.progress.value = int(done)

    def _on_error(self, exc: BaseException) -> None:
        self.status.value = f"failed: {exc}"
        show_error(f"napari-brainseg: {exc}")

    def _on_finished(self) -> None:
        self._warnings.notify()
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        self._worker = None

    def cancel(self) -> None:
        """Stop the running worker (it finishes its current step first)."""
        if self._worker is not None:
            self._worker.quit()
            self.status.value = "cancelled"

    def wait(self, timeout_ms: int = 60_000) -> None:
        """Block until the worker is done (tests and scripts)."""
        from qtpy.QtCore import QCoreApplication, QElapsedTimer

        timer = QElapsedTimer()
        timer.start()
        while self._worker is not None and timer.elapsed() < timeout_ms:
            QCoreApplication.processEvents()


