"""Checking a user's input scaling and label order against labelled films (numpy only)."""

import numpy as np
import pytest

from xscreen.runtime._assumptions import CLEAR_MARGIN, check_assumptions, label_orders

LABELS = ("covid", "healthy", "pneumonia")


def _films(n_per_class=100, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    return y, [LABELS[i] for i in y], rng


def _outputs(y, accuracy, rng, order=LABELS):
    """One-hot-ish outputs, right on `accuracy` of the films, with output j meaning order[j]."""
    pred = np.where(rng.random(y.size) < accuracy, y, rng.integers(0, 3, y.size))
    columns = np.array([order.index(LABELS[i]) for i in pred])
    prob = np.full((y.size, 3), 0.1)
    prob[np.arange(y.size), columns] = 0.8
    return prob


def test_the_given_scaling_and_order_pass_when_they_are_the_best():
    y, names, rng = _films()
    check = check_assumptions({"unit": _outputs(y, 0.9, rng), "mobilenet_v2": _outputs(y, 0.7, rng),
                               "raw": _outputs(y, 0.0, rng)}, names, LABELS, "unit")
    assert check.ok and check.best == check.given and check.tried == 3 * 6
    assert "checked" in check.message()


def test_a_clearly_better_scaling_is_named_with_both_figures():
    y, names, rng = _films()
    check = check_assumptions({"unit": _outputs(y, 0.9, rng), "mobilenet_v2": _outputs(y, 0.6, rng)},
                              names, LABELS, "mobilenet_v2")
    assert check.better_found and not check.ok
    assert check.best.input_scaling == "unit" and check.best.labels == LABELS
    message = check.message()
    assert "--input-scaling unit looks right" in message and "--labels" not in message.split("looks")[0]
    assert f"{check.best.macro_f1:.3f}" in message and f"{check.given.macro_f1:.3f}" in message
    assert check.difference_ci95[0] > 0


def test_another_label_order_is_found_and_a_below_chance_score_fails():
    y, names, rng = _films()
    # The model's outputs are healthy, pneumonia, covid; the user says covid, healthy, pneumonia.
    prob = _outputs(y, 0.9, rng, order=("healthy", "pneumonia", "covid"))
    check = check_assumptions({"unit": prob}, names, LABELS, "unit")
    assert check.below_chance and check.better_found
    assert check.best.labels == ("healthy", "pneumonia", "covid")
    assert "--labels healthy,pneumonia,covid looks right" in check.message()


def test_a_small_difference_is_not_clear():
    y, names, rng = _films(n_per_class=30)
    given = _outputs(y, 0.80, rng)
    other = given.copy()
    flip = np.flatnonzero(other.argmax(1) != y)[:3]  # three more films right: well under the margin
    other[flip] = np.eye(3)[y[flip]]
    check = check_assumptions({"unit": given, "imagenet": other}, names, LABELS, "unit")
    assert check.best.input_scaling == "imagenet"
    assert check.best.macro_f1 - check.given.macro_f1 < CLEAR_MARGIN and check.ok


def test_label_orders_and_missing_scaling():
    assert len(label_orders(LABELS)) == 6 and label_orders(LABELS)[0] == LABELS
    assert label_orders(tuple("abcde")) == [tuple("abcde")]  # 120 orders: only the given one
    with pytest.raises(ValueError, match="given input scaling"):
        check_assumptions({"unit": np.eye(3)}, list(LABELS), LABELS, "raw")
