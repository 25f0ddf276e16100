"""WriterLock: one writer per library, across threads of one process and across processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.errors import StoreLockedError
from core.library.locking import WriterLock


def test_a_second_thread_waits_and_then_writes(tmp_path: Path) -> None:
    lock = WriterLock(tmp_path / "sub" / "writer.lock", wait_s=5)
    order: list[str] = []

    def second() -> None:
        with lock.hold():
            order.append("second")

    with lock.hold():
        worker = threading.Thread(target=second)
        worker.start()
        time.sleep(0.3)
        order.append("first")
    worker.join(timeout=5)
    assert order == ["first", "second"]
    assert (tmp_path / "sub" / "writer.lock").is_file()  # the folder was created


def test_a_busy_thread_lock_times_out_with_a_clear_error(tmp_path: Path) -> None:
    lock = WriterLock(tmp_path / "writer.lock", wait_s=0.2)
    with lock.hold():
        errors: list[Exception] = []

        def try_write() -> None:
            try:
                with lock.hold():
                    pass
            except StoreLockedError as exc:
                errors.append(exc)

        worker = threading.Thread(target=try_write)
        worker.start()
        worker.join(timeout=5)
    assert len(errors) == 1 and "Another upload or re-index is running" in str(errors[0])
    with lock.hold():  # released after the error: usable again
        pass


def test_another_process_holding_the_file_lock_is_named(tmp_path: Path) -> None:
    path = tmp_path / "writer.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(30)\n"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreLockedError, match="Another process is writing") as caught:
            with WriterLock(path, wait_s=0.3).hold():
                pass
        assert str(path) in str(caught.value)
    finally:
        holder.kill()
        holder.wait()
    with WriterLock(path, wait_s=1).hold():  # free once that process is gone
        pass
