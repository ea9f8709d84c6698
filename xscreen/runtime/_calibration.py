"""A site calibration stored in the model file and applied right after the model call (numpy only).

``xscreen calibrate`` fits it on a site's labelled films (``xscreen/calibrate/``); every command that
opens the file (``run``, ``bench``, ``report``, the Ray engine, a Pi) applies it with no flag, because
:class:`~xscreen.runtime.ScreeningModel` does. What it computes from the network's probabilities ``p``
``(N, C)`` and, for a model with a ``scope`` output, the whitened pooled-feature coordinates ``z``
``(N, k)`` (see ``_contract.py``):

* the labels the site's films held (``checked``) get new logits
  ``log max(p_c, log_floor) / temperature + bias_c + (z / feature_scale) @ head[:, c]``
  (``head`` optional: a linear correction on the pooled features, fitted as an offset to the model's
  own head and shrunk towards it);
* they share, through a softmax, the probability mass the model gave them: ``1 - sum(p_absent)``;
* a label the site's films did not hold keeps its probability exactly (it was not checked, so it still
  ranks films as before).

With temperature 1, zero biases and no head it is the identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ._contract import ModelContractError

LOG_FLOOR = 1e-7  # probabilities below this count as this: log(0) would make one film decide a fit


@dataclass(frozen=True)
class SiteCalibration:
    """What ``xscreen calibrate`` fitted, as the runtime applies it (see the module docstring)."""

    checked: tuple[str, ...]  # the labels the site's films held, in model label order
    temperature: float = 1.0
    bias: tuple[float, ...] = ()  # one per checked label
    head: np.ndarray | None = None  # (k, len(checked)) float64, on z / feature_scale; None: no feature head
    feature_scale: float = 1.0
    log_floor: float = LOG_FLOOR
    record: dict = field(default_factory=dict)  # how it was fitted: films, date, method, cross-validated figures

    def apply(self, probabilities: np.ndarray, features: np.ndarray | None, labels: Sequence[str]) -> np.ndarray:
        """Calibrated probabilities ``(N, C)`` float32 from the network's ``probabilities`` and ``features`` (z)."""
        p = np.asarray(probabilities, np.float64)
        columns = [list(labels).index(label) for label in self.checked]
        logits = self.logits(p, features, labels)
        logits -= logits.max(axis=1, keepdims=True)
        shares = np.exp(logits)
        shares /= shares.sum(axis=1, keepdims=True)
        kept_mass = 1.0 - (p.sum(axis=1) - p[:, columns].sum(axis=1))
        out = p.copy()
        out[:, columns] = shares * kept_mass[:, None]
        return out.astype(np.float32)

    def logits(self, probabilities: np.ndarray, features: np.ndarray | None, labels: Sequence[str]) -> np.ndarray:
        """The checked labels' logits ``(N, len(checked))`` float64 (before their softmax)."""
        columns = [list(labels).index(label) for label in self.checked]
        p = np.asarray(probabilities, np.float64)[:, columns]
        logits = np.log(np.maximum(p, self.log_floor)) / self.temperature + np.asarray(self.bias, np.float64)
        if self.head is not None:
            if features is None:
                raise ValueError("this calibration has a feature head: it needs the model's scope output")
            logits += (np.asarray(features, np.float64) / self.feature_scale) @ self.head
        return logits

    @property
    def fitted(self) -> str:
        """What was fitted, in words: ``bias + temperature``, ``... + feature head``, or ``nothing``."""
        return self.record.get("fitted", "nothing")

    def to_dict(self) -> dict:
        """JSON-ready, for ``ModelMetadata.calibration`` (floats to 7 significant digits)."""
        return {
            "checked": list(self.checked),
            "temperature": _round(self.temperature),
            "bias": [_round(b) for b in self.bias],
            "head": None if self.head is None else [[_round(v) for v in row] for row in self.head],
            "feature_scale": _round(self.feature_scale),
            "log_floor": self.log_floor,
            "record": self.record,
        }

    @classmethod
    def from_dict(cls, data: dict, labels: Sequence[str], feature_dims: int | None, path) -> SiteCalibration:
        """Parse ``metadata.calibration``; ModelContractError naming ``path`` when it does not fit the model."""
        try:
            checked = tuple(data["checked"])
            head = None if data.get("head") is None else np.asarray(data["head"], np.float64)
            calibration = cls(checked, float(data["temperature"]), tuple(float(b) for b in data["bias"]), head,
                              float(data.get("feature_scale", 1.0)), float(data.get("log_floor", LOG_FLOOR)),
                              dict(data.get("record") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelContractError(f"{path}: its site calibration is damaged ({exc})") from exc
        unknown = [label for label in checked if label not in labels]
        if unknown or len(set(checked)) != len(checked) or len(checked) < 2:
            raise ModelContractError(f"{path}: its site calibration names labels {list(checked)}, "
                                     f"not two or more of the model's {list(labels)}")
        if len(calibration.bias) != len(checked) or not calibration.temperature > 0:
            raise ModelContractError(f"{path}: its site calibration has {len(calibration.bias)} biases for "
                                     f"{len(checked)} labels, temperature {calibration.temperature}")
        if head is not None and (feature_dims is None or head.shape != (feature_dims, len(checked))):
            raise ModelContractError(f"{path}: its site calibration has a feature head of shape {head.shape}, "
                                     f"but the model's scope output has {feature_dims} values per image")
        # Model label order, whatever the stored order, so apply() and the report agree.
        order = sorted(range(len(checked)), key=lambda i: list(labels).index(checked[i]))
        return cls(tuple(checked[i] for i in order), calibration.temperature,
                   tuple(calibration.bias[i] for i in order), None if head is None else head[:, order],
                   calibration.feature_scale, calibration.log_floor, calibration.record)


def _round(value: float) -> float:
    return float(f"{float(value):.7g}")


def describe_calibration(calibration: dict | None) -> str:
    """One line for ``xscreen info``: films, date, what was fitted, the cross-validated figures."""
    if not calibration:
        return "none (the model as trained; xscreen calibrate fits one to a site's films)"
    record = calibration.get("record") or {}
    films = ", ".join(f"{n} {label}" for label, n in (record.get("films_per_label") or {}).items())
    parts = [f"fitted {record.get('fitted_at', 'at an unknown date')} on {films or 'unknown'} films"
             + (f" ({record['site']})" if record.get("site") else ""),
             f"what: {record.get('fitted', 'not given')}"]
    unchecked = record.get("not_checked") or []
    if unchecked:
        parts.append(f"not checked (no such films): {', '.join(unchecked)}")
    cv = record.get("cross_validated") or {}
    if cv.get("macro_f1_before") is not None:
        line = f"cross-validated macro-F1 {cv['macro_f1_before']:.3f} -> {cv['macro_f1_after']:.3f}"
        if cv.get("auc_before") is not None and cv.get("auc_after") is not None:
            line += f", ROC AUC {cv['auc_before']:.3f} -> {cv['auc_after']:.3f}"
        parts.append(line)
    if record.get("threshold_rule"):
        parts.append(record["threshold_rule"])
    return "; ".join(parts)
