"""The worker base every widget shares: expected failures are one notification, no traceback."""

from napari_brainseg._widgets._base import _WorkerWidget


def test_expected_error_in_worker_is_one_notification(make_napari_viewer_proxy, qtbot,
                                                      monkeypatch):
    from napari.utils.notifications import notification_manager

    shown, relayed, done = [], [], []
    monkeypatch.setattr("napari_brainseg._widgets._base.show_error", shown.append)
    monkeypatch.setattr(notification_manager, "receive_error", lambda *a: relayed.append(a))

    def job():
        yield (1, 2)
        raise OSError(28, "No space left on device")

    viewer = make_napari_viewer_proxy()
    w = _WorkerWidget(viewer, "Run", lambda: (job(), done.append))
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: w._worker is None, timeout=10_000)
    assert len(shown) == 1 and "No space left" in shown[0]
    assert "failed" in w.status.value and not relayed and not done
    assert w.run_button.enabled and not w.cancel_button.enabled


def test_core_warnings_become_notifications(make_napari_viewer_proxy, qtbot, monkeypatch):
    import logging

    shown, done = [], []
    monkeypatch.setattr("napari_brainseg._widgets._base.show_warning", shown.append)
    log = logging.getLogger("napari_brainseg.data")

    def job():
        for k in range(5):  # in the worker thread; a repeated message is shown once
            log.warning("scan%d.png: values replaced", k % 4)
            yield (k, 5)
        return "ok"

    def make_job():
        log.warning("one patient/volume only: validating on held-out slices of it")
        return job(), done.append

    viewer = make_napari_viewer_proxy()
    w = _WorkerWidget(viewer, "Run", make_job)
    w.run_button.clicked.emit()
    assert shown == ["napari-brainseg: one patient/volume only: validating on held-out slices "
                     "of it"]  # set-up warnings: at once
    qtbot.waitUntil(lambda: w._worker is None, timeout=10_000)
    assert done == ["ok"]
    assert shown[1:] == [f"napari-brainseg: scan{k}.png: values replaced" for k in range(3)] + [
        "napari-brainseg: 1 more warning(s); see the status line and the log"]
    log.warning("logged after the run")  # the widget no longer listens
    assert len(shown) == 5
