"""The training progress bar (tqdm): step, loss, steps/s; silent when stderr is not a terminal."""

from __future__ import annotations

import os
import sys

from tqdm import tqdm


def progress_enabled(flag: bool | None) -> bool:
    """``flag`` if given; else on only for an interactive terminal and unless SCIML_PROGRESS=0."""
    if flag is not None:
        return bool(flag)
    if os.environ.get("SCIML_PROGRESS", "").strip() in {"0", "false", "off"}:
        return False
    return sys.stderr.isatty()


class Progress:
    """A thin wrapper over ``tqdm`` that shows the last loss read and the step rate."""

    def __init__(self, total: int, initial: int = 0, enabled: bool | None = None, desc: str = "fit"):
        self._bar = None
        if progress_enabled(enabled):
            self._bar = tqdm(
                total=total,
                initial=initial,
                unit="step",
                desc=desc,
                dynamic_ncols=True,
                file=sys.stderr,
                leave=True,
            )
        self._n = initial

    def update(self, step: int, loss: float) -> None:
        if self._bar is None:
            return
        self._bar.update(step - self._n)
        self._n = step
        self._bar.set_postfix(loss=f"{loss:.4e}", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
