"""Linear probes on frozen features, fitted to convergence with scikit-learn.

Used for the pretrained baseline recorded in every run (what the untouched backbone already knows) and by
the ``linear-probe`` and ``lp-ft`` strategies. The L2 strength is chosen on validation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

C_GRID = (0.01, 0.1, 1.0, 10.0)


@dataclass
class Probe:
    """A fitted probe as (C, D) weight and (C,) bias, ready to copy into a linear head."""

    weight: np.ndarray
    bias: np.ndarray
    c: float
    validation_score: float

    def logits(self, features: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        return x @ torch.as_tensor(self.weight, dtype=torch.float32).T + torch.as_tensor(
            self.bias, dtype=torch.float32
        )


def _as_logit_weights(
    coef: np.ndarray, intercept: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn stores a binary model as one row; a softmax head wants two rows giving the same probabilities."""
    if num_classes == 2 and coef.shape[0] == 1:
        return np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    return coef, intercept


def fit_probe(x_train, y_train, x_val, y_val, problem: str, num_classes: int, seed: int = 0) -> Probe:
    """Fits a linear model on features, choosing the L2 strength on validation.

    Args:
        x_train / x_val: (N, D) features.
        y_train / y_val: class ids (single_label), multi-hot rows (multi_label) or floats (regression).
        problem: "single_label", "multi_label" or "regression".
        num_classes: Number of outputs of the head (1 for regression).
        seed: Random state of the solver.

    Returns:
        The best :class:`Probe` on validation (macro-F1, or negative RMSE for regression).
    """
    # sklearn, scipy, pandas ... load on first use, not when probe is imported
    from sklearn.linear_model import LogisticRegression, Ridge

    # sklearn, scipy, pandas ... load on first use, not when probe is imported
    from sklearn.metrics import f1_score, mean_squared_error

    x_train, x_val = np.asarray(x_train, dtype=np.float32), np.asarray(x_val, dtype=np.float32)
    best: Probe | None = None
    for c in C_GRID:
        if problem == "regression":
            model = Ridge(alpha=1.0 / c, random_state=seed).fit(x_train, y_train)
            w, b = model.coef_.reshape(1, -1), np.atleast_1d(model.intercept_)
            score = -float(np.sqrt(mean_squared_error(y_val, model.predict(x_val))))
        elif problem == "multi_label":
            ws, bs = [], []
            y_train = np.asarray(y_train)
            for j in range(y_train.shape[1]):
                col = y_train[:, j]
                if col.min() == col.max():  # a label always on or always off: a constant logit
                    ws.append(np.zeros(x_train.shape[1]))
                    bs.append(10.0 if col[0] else -10.0)
                    continue
                m = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x_train, col)
                ws.append(m.coef_[0])
                bs.append(m.intercept_[0])
            w, b = np.array(ws), np.array(bs)
            pred = (x_val @ w.T + b) > 0
            score = float(f1_score(np.asarray(y_val), pred, average="macro", zero_division=0))
        else:
            model = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x_train, y_train)
            coef = np.zeros((num_classes if num_classes > 2 else 1, x_train.shape[1]))
            intercept = np.zeros(coef.shape[0])
            if num_classes > 2:  # classes absent from train keep a very low logit
                coef[model.classes_] = model.coef_
                intercept[:] = -1e4
                intercept[model.classes_] = model.intercept_
            else:
                coef, intercept = model.coef_, model.intercept_
            w, b = _as_logit_weights(coef, intercept, num_classes)
            pred = np.argmax(x_val @ w.T + b, axis=1)
            score = float(f1_score(y_val, pred, average="macro", zero_division=0))
        if best is None or score > best.validation_score:
            best = Probe(np.asarray(w, dtype=np.float32), np.asarray(b, dtype=np.float32), c, score)
    return best


# ------------------------------------------------------------------ the steps every classifying task shares


def wants_probe(plan, cfg) -> bool:
    """Whether the run fits the probe: for the pretrained baseline, or as the head (LP-FT, linear-probe)."""
    return cfg.evaluation.pretrained_baseline or plan.probe_init or plan.closed_form


def wants_features(plan, cfg) -> bool:
    """Whether the run computes frozen pretrained features: to cache them for a head, or for the probe."""
    return plan.cache == "features" or wants_probe(plan, cfg)


def load_into_head(model: torch.nn.Module, probe: Probe) -> torch.nn.Module:
    """Copies the probe into the model's linear output layer (the head then computes the probe's logits)."""
    layer = model.head.output_layer
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(probe.weight))
        layer.bias.copy_(torch.as_tensor(probe.bias))
    return model


def baseline_block(probe: Probe, scores: dict[str, dict], what: str = "features") -> dict:
    """``metrics["pretrained_baseline"]``: the probe's validation and test scores and how it was fitted."""
    return scores | {"method": f"linear probe on frozen pretrained {what} (L2 C={probe.c})"}


def baseline_model(build, cfg, probe: Probe) -> torch.nn.Module:
    """The pretrained baseline as a run model: ``build(cfg)`` with a linear head, the probe copied into it.

    Args:
        build: ``build(cfg) -> model`` (the task's own model builder on its backbone spec and labels).
        cfg: The run's config (its head is made linear: the probe is linear whatever the run trained).
        probe: The fitted probe.
    """
    linear = cfg.model_copy(update={"head": cfg.head.model_copy(update={"kind": "linear"})})
    return load_into_head(build(linear), probe).eval()
