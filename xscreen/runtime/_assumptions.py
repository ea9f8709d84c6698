"""Check what a user told xscreen about their own model (input scaling, label order) against labelled films.

A model trained elsewhere arrives with two facts only its user knows: how its input was scaled and in
which order its outputs are labelled. Both can be wrong without any conversion check noticing (the
exported file agrees perfectly with a wrapped model that has the same wrong scaling). Labelled films
can notice: score the model under every input scaling (:data:`INPUT_SCALINGS`) and every label order,
and if another combination is *clearly* better than the one given, say so with both figures.

"Clearly" (:data:`CLEAR_MARGIN`): macro-F1 higher by at least 0.05 **and** the 95 % paired bootstrap
interval of the difference above zero, so a few hundred films cannot trigger it by chance. A score
below chance (macro-F1 < 1 / C) is wrong whatever else is true. Numpy only: ``xscreen export`` calls it
after running the wrapped Keras model under each scaling, ``xscreen calibrate`` can call it with the
probabilities of a file.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ._metrics import macro_f1_rows

CLEAR_MARGIN = 0.05  # macro-F1 points an alternative must gain (and its bootstrap interval must exclude 0)
MAX_PERMUTED_LABELS = 4  # up to 4! = 24 label orders are tried; with more labels, only the given order
BOOTSTRAP_RESAMPLES = 1000


@dataclass(frozen=True)
class Assumption:
    """One input scaling and one label order (the label of each output, in output order), scored."""

    input_scaling: str
    labels: tuple[str, ...]
    macro_f1: float


@dataclass(frozen=True)
class AssumptionCheck:
    """The given assumption, the best one found, and whether the difference is clear."""

    given: Assumption
    best: Assumption
    difference_ci95: tuple[float, float]  # paired bootstrap of best - given macro-F1
    films: int
    tried: int  # scalings x label orders scored
    chance: float  # 1 / C

    @property
    def below_chance(self) -> bool:
        return self.given.macro_f1 < self.chance

    @property
    def better_found(self) -> bool:
        """Another scaling or label order is clearly better (see the module docstring)."""
        return (self.best != self.given and self.best.macro_f1 - self.given.macro_f1 >= CLEAR_MARGIN
                and self.difference_ci95[0] > 0)

    @property
    def ok(self) -> bool:
        return not (self.below_chance or self.better_found)

    def options(self, assumption: Assumption) -> str:
        """The command-line options that state an assumption."""
        return f"--input-scaling {assumption.input_scaling} --labels {','.join(assumption.labels)}"

    def message(self) -> str:
        """One line: what was checked and what it found."""
        given = (f"macro-F1 {self.given.macro_f1:.3f} on {self.films} labelled films with "
                 f"{self.options(self.given)}")
        if self.better_found:
            changed = [f"--input-scaling {self.best.input_scaling}"] * (
                self.best.input_scaling != self.given.input_scaling) + [
                f"--labels {','.join(self.best.labels)}"] * (self.best.labels != self.given.labels)
            low, high = self.difference_ci95
            return (f"{' and '.join(changed)} looks right and yours wrong: macro-F1 {self.best.macro_f1:.3f} "
                    f"against {self.given.macro_f1:.3f} with {self.options(self.given)} on {self.films} labelled "
                    f"films (difference {self.best.macro_f1 - self.given.macro_f1:+.3f}, 95 % interval "
                    f"{low:+.3f} to {high:+.3f})")
        if self.below_chance:
            return (f"{given}, below chance ({self.chance:.3f} for {len(self.given.labels)} classes) and no "
                    f"other scaling or label order of {self.tried} tried does clearly better: the model or "
                    "the films' labels are wrong")
        return (f"input scaling and label order checked: {given}, the best of {self.tried} tried or within "
                f"{CLEAR_MARGIN} of it (best: {self.best.macro_f1:.3f})")

    def to_dict(self) -> dict:
        return {"ok": self.ok, "below_chance": self.below_chance, "better_found": self.better_found,
                "given": _as_dict(self.given), "best": _as_dict(self.best),
                "difference_ci95": list(self.difference_ci95), "films": self.films, "tried": self.tried,
                "chance": self.chance, "clear_margin": CLEAR_MARGIN, "message": self.message()}


def _as_dict(assumption: Assumption) -> dict:
    return {"input_scaling": assumption.input_scaling, "labels": list(assumption.labels),
            "macro_f1": assumption.macro_f1}


def label_orders(labels: Sequence[str]) -> list[tuple[str, ...]]:
    """The given order first, then every other permutation (only the given one past 4 labels)."""
    given = tuple(labels)
    if len(given) > MAX_PERMUTED_LABELS:
        return [given]
    return [given] + [order for order in itertools.permutations(given) if order != given]


def check_assumptions(probabilities: Mapping[str, np.ndarray], true_labels: Sequence[str],
                      labels: Sequence[str], input_scaling: str, seed: int = 0) -> AssumptionCheck:
    """Score every scaling in ``probabilities`` (scaling name -> (N, C) outputs of the model under it)
    and every label order against ``true_labels`` (N label names); ``labels`` and ``input_scaling``
    are what the user gave."""
    labels = tuple(labels)
    if input_scaling not in probabilities:
        raise ValueError(f"no probabilities for the given input scaling {input_scaling!r}")
    y_true = np.array([labels.index(label) for label in true_labels], int)
    n_classes = len(labels)
    scored: list[tuple[Assumption, np.ndarray]] = []
    for scaling, prob in probabilities.items():
        outputs = np.asarray(prob).argmax(axis=1)
        for order in label_orders(labels):
            # Output j means label order[j]: its index among the user's labels.
            y_pred = np.array([labels.index(name) for name in order], int)[outputs]
            scored.append((Assumption(scaling, order, _macro_f1(y_true, y_pred, n_classes)), y_pred))
    given_pred = next(pred for a, pred in scored if a.input_scaling == input_scaling and a.labels == labels)
    given = next(a for a, _ in scored if a.input_scaling == input_scaling and a.labels == labels)
    best, best_pred = max(scored, key=lambda item: item[0].macro_f1)  # first of equals: the given one
    interval = _paired_bootstrap(y_true, best_pred, given_pred, n_classes, seed) if best != given else (0.0, 0.0)
    return AssumptionCheck(given, best, interval, len(y_true), len(scored), 1.0 / n_classes)


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Mean F1 over the classes present, as ``classification_report`` computes it."""
    return float(macro_f1_rows(y_true[None], y_pred[None], n_classes)[0])


def _paired_bootstrap(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, n_classes: int,
                      seed: int) -> tuple[float, float]:
    """95 % percentile interval of macro-F1(a) - macro-F1(b), resampling the same films for both."""
    pick = np.random.default_rng(seed).integers(0, y_true.size, (BOOTSTRAP_RESAMPLES, y_true.size))
    diff = (macro_f1_rows(y_true[pick], pred_a[pick], n_classes)
            - macro_f1_rows(y_true[pick], pred_b[pick], n_classes))
    low, high = np.percentile(diff, [2.5, 97.5])
    return float(low), float(high)
