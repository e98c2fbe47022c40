"""``remove_leftovers``: what writes cut short by a kill leave in a run folder goes on resume; nothing else."""

from __future__ import annotations

from pathlib import Path

from transferkit.utils.io import atomic_write_text, remove_leftovers


def test_removes_only_the_temporary_names_of_cut_short_writes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    keep = [
        "config.yaml",
        "model/config.json",
        "checkpoints/step-00000003/state.pt",
        "logs/train_log.jsonl",
        "notes.old",
        "draft.partial",
    ]  # a user's own files so named: transferkit's leftovers are folders
    junk = [
        ".metrics.json.k2x_9abc.tmp",  # atomic_write_text
        ".training_curves.png.kdx86yq9.tmp.png",  # atomic_save_via keeps the suffix
        "model.partial/model.safetensors",  # publish_folder
        "model.old/config.json",  # move_into_place, between its renames
        "checkpoints/step-00000004.partial/weights.safetensors",
        "checkpoints/.step-00000005.4242.partial/state.pt",  # a cross-device publish
    ]
    for rel in keep + junk:
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text("x")
    atomic_write_text(run / "README.md", "a finished write leaves no temporary file\n")
    removed = {p.name for p in remove_leftovers(run)}
    assert removed == {
        ".metrics.json.k2x_9abc.tmp", ".training_curves.png.kdx86yq9.tmp.png", "model.partial", "model.old",
        "step-00000004.partial", ".step-00000005.4242.partial",
    }  # fmt: skip
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert left == sorted([*keep, "README.md"])
