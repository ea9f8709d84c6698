"""Fitting the scope head: "what is this image?" learned from examples of what is not a frontal film.

The head is a multinomial logistic regression, in numpy, on the model's whitened scope coordinates
``z`` (the first ``k`` of them; see ``runtime._contract``) and the image's pixel spread. Its classes
are the kinds a user can act on (``runtime._scope.HEAD_KINDS``: frontal, lateral view, CT or
cross-section, photo, blank, inverted, other); the out-of-scope score is ``1 - p(frontal)``. Each
kind weighs the same in the loss whatever its count, so 27 lateral films count as much as thousands
of frontal ones, and an L2 penalty keeps 1,280 weights per kind from memorising them.

The threshold is chosen on frontal films the head never learned from, per source: the largest of the
sources' ``SELECT_QUANTILE`` quantiles, so every source loses at most 0.5 % of those films (and, measured,
under 1 % of its test films).
"""

from __future__ import annotations

import numpy as np

from ..runtime._scope import HEAD_KINDS, head_inputs

# 99.5 %, not 99 %: measured on the bundled model's test films, 99 % lost 4 of 326 COVID-database films (1.2 %),
# 99.5 % lost 3 (0.9 %) for one lateral film of 27 more let through (benchmarks/results/scope_head.md).
SELECT_QUANTILE = 0.995
L2 = 1e-3
STEPS = 300


def fit_head(z: np.ndarray, spread: np.ndarray, kinds: np.ndarray, features: int, l2: float = L2,
             steps: int = STEPS) -> dict:
    """Weights ``(features + 1, K)`` and bias ``(K,)`` over :data:`HEAD_KINDS` (kinds absent get none).

    ``kinds`` holds each image's index into HEAD_KINDS. Full-batch Adam on the class-balanced
    cross-entropy plus ``l2 * |W|^2``; deterministic.
    """
    x = head_inputs(z, spread, features)
    n_kinds = len(HEAD_KINDS)
    counts = np.bincount(kinds, minlength=n_kinds).astype(np.float64)
    present = counts > 0
    sample_weight = (1.0 / (present.sum() * counts[kinds])).astype(np.float32)
    onehot = np.eye(n_kinds, dtype=np.float32)[kinds]
    weights = np.zeros((x.shape[1], n_kinds), np.float32)
    bias = np.zeros(n_kinds, np.float32)
    moments = [np.zeros_like(weights), np.zeros_like(weights), np.zeros_like(bias), np.zeros_like(bias)]
    rate, beta1, beta2 = 0.02, 0.9, 0.999
    for step in range(1, steps + 1):
        logits = x @ weights + bias
        logits[:, ~present] = -1e4  # a kind with no examples is never predicted
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        error = (p - onehot) * sample_weight[:, None]
        grads = (x.T @ error + 2 * l2 * weights, error.sum(axis=0))
        for i, (param, grad) in enumerate(zip((weights, bias), grads)):
            m, v = moments[2 * i], moments[2 * i + 1]
            m *= beta1
            m += (1 - beta1) * grad
            v *= beta2
            v += (1 - beta2) * grad * grad
            param -= rate * (m / (1 - beta1 ** step)) / (np.sqrt(v / (1 - beta2 ** step)) + 1e-8)
    bias[~present] = -1e4
    return {"features": int(features), "kinds": list(HEAD_KINDS), "weights": weights, "bias": bias}


def select_threshold(p_out: np.ndarray, sources: np.ndarray) -> tuple[float, dict]:
    """The largest per-source ``SELECT_QUANTILE`` quantile of frontal films' out-of-scope probabilities."""
    per_source = {str(s): float(np.quantile(p_out[sources == s], SELECT_QUANTILE)) for s in sorted(set(sources))}
    return max(per_source.values()), per_source


def head_metadata(head: dict, threshold: float, rule: str, fitted_on: str) -> dict:
    """The head as JSON numbers for ``metadata.scope["head"]`` (6 significant digits)."""
    return {
        "method": "multinomial-logistic", "kinds": head["kinds"], "features": head["features"],
        "inputs": f"z[:{head['features']}] and the pixel spread (std / 64) of the model's input",
        "weights": [[float(f"{w:.6g}") for w in row] for row in np.asarray(head["weights"]).tolist()],
        "bias": [float(f"{b:.6g}") for b in np.asarray(head["bias"]).tolist()],
        "threshold": round(float(threshold), 6), "threshold_rule": rule, "fitted_on": fitted_on,
    }
