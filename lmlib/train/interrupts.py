"""Stopping a run cleanly: SIGTERM (preemption) and SIGINT (Ctrl-C, a cancelled Dagster run).

Both signals become a flag that the training loop reads between steps; the loop then writes a
checkpoint and raises `TrainingInterrupted`, so a stopped run resumes from the step where it
stopped instead of from its last periodic checkpoint. Under torchrun both signals reach every
worker (torchrun forwards what it receives), and the ranks agree on stopping through the loss
all-reduce. Handlers can only be installed from the main thread; elsewhere the flag stays down
and the process's own handling applies.
"""

import signal
import threading

import torch

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The exit status of a process ended by a signal, as shells report it (128 + number).
EXIT_STATUS = {signal.SIGTERM: 143, signal.SIGINT: 130}


class TrainingInterrupted(Exception):
    """A stop signal arrived; a checkpoint was written and the run can resume from it."""

    def __init__(self, step: int, checkpoint, signal_name: str = "SIGTERM"):
        super().__init__(f"training stopped by {signal_name} at step {step}; checkpoint: "
                         f"{checkpoint}. Run it again to resume from there.")
        self.step = step
        self.checkpoint = checkpoint
        self.signal_name = signal_name

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS[signal.Signals[self.signal_name]]


class StopSignals:
    """Context manager: while inside, SIGTERM and SIGINT set `received` (the first one wins)
    instead of killing the process; the previous handlers come back on exit."""

    def __init__(self):
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signal.Signals(signum)

    def __exit__(self, *exc):
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous.clear()
        return False


def all_reduce_with_stop_signal(value: torch.Tensor, received: signal.Signals | None
                                ) -> tuple[torch.Tensor, str | None]:
    """Sums the scalar `value` over the ranks in the same all-reduce that tells whether any rank
    received a stop signal (one collective a step instead of two); returns the sum and the name
    of the first signal in STOP_SIGNALS that some rank received, or None."""
    agreed = torch.stack([value.float(), *(
        torch.tensor(float(received == number), device=value.device) for number in STOP_SIGNALS)])
    torch.distributed.all_reduce(agreed)
    stopped_by = [number.name for number, count in zip(STOP_SIGNALS, agreed[1:]) if count > 0]
    return agreed[0], stopped_by[0] if stopped_by else None
