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
