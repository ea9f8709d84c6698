"""Fit a site calibration and choose it by patient-grouped cross-validation, numpy only.

Every candidate is a multinomial logistic regression over the labels the site's films hold, whose
logits are ``a * log p + b + z W``: ``log p`` the model's own log-probabilities (an offset, so
``a = 1, b = 0, W = 0`` is the model as it is), ``a`` the inverse temperature, ``b`` the class
biases, ``W`` a linear correction on the whitened pooled features ``z`` of the scope output. ``W``
has an L2 penalty, so it is shrunk towards the model's own head; how hard is chosen by the
cross-validation. ``a`` and ``b`` get a weak pull towards the identity, so that a site whose films the
model already separates cleanly does not send the temperature to zero.

The ridge solution lies in the span of the site's ``z`` (its gradient always does), so ``W = V B``
with ``V`` the right singular vectors of the films' ``z`` (from the eigenvectors of the films' Gram
matrix ``z z^T``: n x n, not k x k): a few hundred parameters at most, fitted by Newton's method with
a backtracking line search (the loss is convex).

The choice: every candidate's out-of-fold probabilities (folds by patient, each class spread over
them) are scored by log-loss. Among the candidates whose out-of-fold macro-F1 and log-loss are not
worse than the model's as it is, the simplest one (as is, then biases, then the head from the strongest penalty
down) whose log-loss is within one standard error of the lowest (paired over the films) wins: a
few dozen films cannot tell apart penalties whose losses differ by less. "As is" is itself a
candidate, so calibration never makes things worse on that cross-validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..runtime._calibration import LOG_FLOOR, SiteCalibration
from ..runtime._metrics import classification_report

HEAD_STRENGTHS = (30.0, 10.0, 3.0, 1.0, 0.3, 0.1, 0.03)  # L2 penalty on W, in units of the summed log-loss
IDENTITY_PULL = 0.01  # per film, on (a - 1)^2 and b^2
MAX_FOLDS = 5
MAX_HEAD_DIMS = 256  # singular directions of the site's z kept (all of them up to this many films)


@dataclass(frozen=True)
class Candidate:
    """One way to calibrate: as is, biases and temperature, or those plus a feature head of a given strength."""

    name: str
    refit: bool = True  # False: the model as it is
    head_strength: float | None = None  # None: no feature head


def candidates(has_features: bool) -> list[Candidate]:
    """What the cross-validation chooses from, simplest first."""
    out = [Candidate("as is", refit=False), Candidate("bias + temperature")]
    if has_features:
        out += [Candidate(f"bias + temperature + feature head (penalty {s:g})", head_strength=s)
                for s in HEAD_STRENGTHS]
    return out


def grouped_folds(y: np.ndarray, groups: Sequence[str], seed: int = 0) -> np.ndarray:
    """Fold index per film: whole patients per fold, each class's patients dealt round the folds.

    As many folds as the rarest class has patients, at most :data:`MAX_FOLDS`; ValueError below 2.
    """
    y = np.asarray(y)
    groups = np.asarray(groups)
    group_ids, inverse = np.unique(groups, return_inverse=True)
    group_label = np.array([np.bincount(y[inverse == g]).argmax() for g in range(len(group_ids))])
    per_class = [int((group_label == c).sum()) for c in np.unique(y)]
    n_folds = min(MAX_FOLDS, min(per_class))
    if n_folds < 2:
        raise ValueError("every class needs films of at least 2 patients for the cross-validation")
    rng = np.random.default_rng(seed)
    fold_of_group = np.empty(len(group_ids), int)
    start = 0
    for c in np.unique(group_label):
        members = rng.permutation(np.flatnonzero(group_label == c))
        fold_of_group[members] = (start + np.arange(len(members))) % n_folds
        start += len(members)
    return fold_of_group[inverse]


def fit_calibration(candidate: Candidate, probabilities: np.ndarray, features: np.ndarray | None,
                    y: np.ndarray, labels: Sequence[str], checked: Sequence[str],
                    feature_scale: float) -> SiteCalibration:
    """Fit ``candidate`` on films: the model's ``probabilities`` (N, C), features z (N, k), true label indices ``y``."""
    columns = [list(labels).index(label) for label in checked]
    offset = np.log(np.maximum(np.asarray(probabilities, np.float64)[:, columns], LOG_FLOOR))
    target = np.searchsorted(columns, y)  # columns are in label order: index among the checked labels
    coordinates = to_head = None
    if candidate.head_strength is not None:
        z = np.asarray(features, np.float64) / feature_scale
        eigenvalues, u = np.linalg.eigh(z @ z.T)  # z = U S V^T: z z^T = U S^2 U^T
        keep = np.argsort(eigenvalues)[::-1][:MAX_HEAD_DIMS]
        keep = keep[eigenvalues[keep] > eigenvalues[keep[0]] * 1e-12]
        s = np.sqrt(eigenvalues[keep])
        coordinates = u[:, keep] * s  # z V
        to_head = z.T @ (u[:, keep] / s)  # V, (k, r)
    a, b, coefficients = _newton(offset, coordinates, target, candidate.head_strength or 0.0)
    head = None if to_head is None else to_head @ coefficients
    return SiteCalibration(tuple(checked), 1.0 / a, tuple(b), head, feature_scale)


def _newton(offset: np.ndarray, x: np.ndarray | None, target: np.ndarray, strength: float,
            iterations: int = 50) -> tuple[float, np.ndarray, np.ndarray | None]:
    """Minimise sum NLL(a * offset + b + x B) + pull((a-1)^2 + |b|^2) + strength |B|^2 over (a, b, B)."""
    n, c = offset.shape
    r = 0 if x is None else x.shape[1]
    n_params = 1 + c + r * c
    design = np.zeros((n, c, n_params))  # logits = design @ theta
    design[:, :, 0] = offset
    design[:, np.arange(c), 1 + np.arange(c)] = 1.0
    if r:
        for k in range(c):
            design[:, k, 1 + c + k::c] = x
    penalty = np.concatenate([np.full(1 + c, IDENTITY_PULL * n), np.full(r * c, strength)])
    prior = np.zeros(n_params)
    prior[0] = 1.0
    onehot = np.eye(c)[target]

    def loss_and_probs(theta):
        logits = design @ theta
        logits -= logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1, keepdims=True))
        log_p = logits - log_norm
        return -(onehot * log_p).sum() + (penalty * (theta - prior) ** 2).sum(), np.exp(log_p)

    theta = prior.copy()
    loss, p = loss_and_probs(theta)
    flat = design.reshape(n * c, n_params)
    for _ in range(iterations):
        grad = flat.T @ (p - onehot).ravel() + 2 * penalty * (theta - prior)
        weights = p[:, :, None] * (np.eye(c)[None] - p[:, None, :])  # (n, c, c): diag(p) - p p^T
        hessian = flat.T @ np.einsum("icd,idq->icq", weights, design).reshape(n * c, n_params)
        hessian[np.diag_indices(n_params)] += 2 * penalty + 1e-9
        step = np.linalg.solve(hessian, grad)
        scale = 1.0
        while scale > 1e-6:
            new_loss, new_p = loss_and_probs(theta - scale * step)
            if new_loss <= loss:
                break
            scale /= 2
        else:
            break
        theta, converged = theta - scale * step, loss - new_loss < 1e-9 * max(1.0, abs(loss))
        loss, p = new_loss, new_p
        if converged:
            break
    a = max(float(theta[0]), 1e-3)  # a site whose films the model gets backwards: the temperature stays finite
    return a, theta[1:1 + c], theta[1 + c:].reshape(r, c) if r else None


@dataclass
class CrossValidation:
    """Every candidate's out-of-fold probabilities and figures, and which one won."""

    folds: np.ndarray
    out_of_fold: dict[str, np.ndarray]  # candidate name -> (N, C)
    scores: dict[str, dict]  # candidate name -> {"log_loss", "macro_f1", "chosen"}
    chosen: Candidate


def cross_validate(probabilities: np.ndarray, as_is: np.ndarray, features: np.ndarray | None,
                   y: np.ndarray, groups: Sequence[str], labels: Sequence[str], checked: Sequence[str],
                   feature_scale: float, seed: int = 0) -> CrossValidation:
    """Out-of-fold predictions of every candidate (``as_is``: the model's probabilities as it is) and the choice."""
    folds = grouped_folds(y, groups, seed)
    options = candidates(features is not None)
    out_of_fold: dict[str, np.ndarray] = {}
    for candidate in options:
        if not candidate.refit:
            out_of_fold[candidate.name] = np.asarray(as_is, np.float64)
            continue
        predicted = np.zeros_like(probabilities, dtype=np.float64)
        for fold in np.unique(folds):
            train, test = folds != fold, folds == fold
            calibration = fit_calibration(candidate, probabilities[train],
                                          None if features is None else features[train], y[train], labels,
                                          checked, feature_scale)
            predicted[test] = calibration.apply(probabilities[test], None if features is None else features[test],
                                                labels)
        out_of_fold[candidate.name] = predicted
    losses = {name: film_log_loss(y, p) for name, p in out_of_fold.items()}
    scores = {name: {"log_loss": float(losses[name].mean()),
                     "macro_f1": classification_report(y, p, labels)["macro_f1"]} for name, p in out_of_fold.items()}
    as_is_scores = scores["as is"]
    eligible = [c for c in options if scores[c.name]["macro_f1"] >= as_is_scores["macro_f1"] - 1e-12
                and scores[c.name]["log_loss"] <= as_is_scores["log_loss"]]
    best = min(eligible, key=lambda c: scores[c.name]["log_loss"])
    chosen = next(c for c in eligible if _within_one_standard_error(losses[c.name], losses[best.name]))
    for name in scores:
        scores[name]["chosen"] = name == chosen.name
    return CrossValidation(folds, out_of_fold, scores, chosen)


def film_log_loss(y: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """-log p(true label) per film, each probability floored at the calibration's floor."""
    p = np.asarray(probabilities, np.float64)[np.arange(len(y)), np.asarray(y)]
    return -np.log(np.maximum(p, LOG_FLOOR))


def _within_one_standard_error(losses: np.ndarray, best: np.ndarray) -> bool:
    difference = losses - best
    return difference.mean() <= difference.std(ddof=1) / np.sqrt(len(difference)) + 1e-12
