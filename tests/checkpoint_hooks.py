"""Test helper: keep a copy of the training checkpoint written after a given epoch."""
import shutil

from dnerv_fast.train import trainer as trainer_module


def copy_checkpoint_after(monkeypatch, epoch: int, copy_to) -> None:
    """Make training also copy its checkpoint of ``epoch`` to ``copy_to`` (until monkeypatch.undo)."""
    real_save = trainer_module.save_checkpoint

    def save_and_copy(path, model, optimizer, done, *rest):
        real_save(path, model, optimizer, done, *rest)
        if done == epoch:
            shutil.copy(path, copy_to)

    monkeypatch.setattr(trainer_module, "save_checkpoint", save_and_copy)
