"""Stop training cleanly on SIGTERM, SIGUSR2 and SIGINT (Ctrl-C).

Slurm sends SIGTERM when it cancels or requeues a job, and SIGUSR2 (through submitit) shortly
before a time limit or on preemption. While :func:`deferred` is active, such a signal only records
a request; the training loop checks :func:`requested` at each epoch boundary, saves the progress of
every run and calls :func:`stop`. That hands the signal to the handler that was there before
(submitit's USR2 handler requeues the job and exits; Python's SIGINT handler raises
KeyboardInterrupt), else it exits with :class:`Stopped`. A second Ctrl-C stops at once.
"""
import contextlib
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT)
_request = None  # (signal number, the handler it replaced) once a stop signal arrived


class Stopped(SystemExit):
    """Training stopped by a signal after saving its progress (exit status 128 + signal)."""

    def __init__(self, signum):
        super().__init__(128 + signum)


@contextlib.contextmanager
def deferred():
    """While the block runs, the stop signals are recorded instead of acted on (main thread
    only: elsewhere signals cannot be caught, and the block runs unchanged)."""
    global _request
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in SIGNALS}

    def record(signum, frame):
        global _request
        if _request is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        _request = (signum, before[signum])

    for s in SIGNALS:
        signal.signal(s, record)
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        _request = None


def requested():
    """The name of the stop signal received (SIGTERM, ...), or None."""
    return signal.Signals(_request[0]).name if _request else None


def stop():
    """Act on the recorded signal (call only when progress is saved): the replaced handler if
    it is a Python one (submitit's requeue, KeyboardInterrupt), then KeyboardInterrupt for
    SIGINT and :class:`Stopped` for the others."""
    signum, before = _request
    signal.signal(signum, before)
    if callable(before):
        before(signum, None)
    if signum == signal.SIGINT:  # Ctrl-C ends alike where SIGINT was ignored when Python started
        raise KeyboardInterrupt
    raise Stopped(signum)
