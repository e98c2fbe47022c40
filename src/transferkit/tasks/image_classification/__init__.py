"""Image classification: image folders, CSV lists of paths, ``.npz`` arrays or catalog images -> a label.

``sources.py`` turns the configured sources into validated splits, ``data.py`` holds the per-backbone
preprocessing, augmentation and the image data set / collator, ``model.py`` the task model, ``fit.py`` the
recipe (the text task's run with images), ``predictor.py`` the loaded run, ``card.py`` the model card and
``baselines.py`` the pixels + logistic-regression baseline. Reading image files is shared data code
(:mod:`transferkit.data.images`, read by the catalog's image data sets too).
"""

from __future__ import annotations

from pathlib import Path

from transferkit.tasks.registry import TaskSpec, register_task


def _fit(cfg, frames, resume: bool = False):
    from transferkit.tasks.image_classification.fit import fit as fit_images

    return fit_images(cfg, frames, resume)


def load(run_dir: str | Path, batch_size: int = 64):
    from transferkit.tasks.image_classification.predictor import ImagePredictor

    return ImagePredictor(run_dir, batch_size)


def _pixels(frames):
    from transferkit.tasks.image_classification.baselines import pixels_logistic

    return pixels_logistic(frames)


register_task(
    TaskSpec(
        name="image-classification",
        description="Label whole images (image folder with one sub-folder per class, CSV of path,label, or .npz x/y).",
        fit=_fit,  # not `fit`: the fit submodule would replace it on the package once imported
        load=load,
        inputs="image",
        metric_keys=("accuracy", "f1_macro", "precision_macro", "recall_macro"),
        config_section="image",
        default_backbone="efficientnet-lite0",
        frame_overrides=("image.path_column=text",),  # catalog images are references in `text`
        classical=("pixels+lr", lambda frames: _pixels(frames)),
    )
)
