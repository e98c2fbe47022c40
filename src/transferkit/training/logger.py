"""Step and evaluation records: a JSONL file in the run, and TensorBoard event files."""

from __future__ import annotations

import json
from pathlib import Path


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


class RunLogger:
    """Appends records to ``train_log.jsonl`` and their numbers to TensorBoard (main process only)."""

    def __init__(self, log_dir: Path | None, tensorboard: bool, enabled: bool):
        self.file = None
        self.writer = None
        if log_dir is None or not enabled:
            return
        log_dir.mkdir(parents=True, exist_ok=True)
        self.file = open(log_dir / "train_log.jsonl", "a", buffering=1)  # noqa: SIM115 (closed in close())
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(log_dir / "tensorboard"))

    def log(self, record: dict, step: int) -> None:
        if self.file:
            self.file.write(json.dumps(record) + "\n")
        if self.writer:
            for key, value in _flatten(record).items():
                if (
                    isinstance(value, int | float)
                    and not isinstance(value, bool)
                    and key not in ("step", "epoch")
                ):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.writer:
            self.writer.close()
