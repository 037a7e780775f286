"""An exit handler for the launch files (``launch.event_handlers.OnProcessExit``): a process that exits non-zero
fails the launch, so ``ros2 launch`` ends with a non-zero code instead of running on without it."""
from __future__ import annotations


def fail_on_error_exit(process: str):
    """The ``on_exit`` of ``process``: a non-zero exit raises (the launch fails), unless the launch was shutting down
    (Ctrl-C stops every process)."""
    def on_exit(event, context):
        if event.returncode and not context.is_shutdown:
            raise RuntimeError(f"{process} exited with code {event.returncode} (its log above says why)")
        return []
    return on_exit
