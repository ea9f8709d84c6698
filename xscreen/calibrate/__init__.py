"""Calibrate a model to a site: local validation and recalibration on a few dozen labelled films.

Light (numpy and the runtime, no TensorFlow), so it runs on the Pi that screens. Fitting, its
cross-validation and the report live here; applying a stored calibration is part of the model
contract (``xscreen.runtime._calibration``).
"""

from ._calibrate import ADVISED_FILMS, MIN_FILMS, CalibrationOutcome, calibrate_site
from ._films import CalibrationError, SiteFilms, read_site_films, site_films
from ._fit import candidates, cross_validate, fit_calibration, grouped_folds
from ._report import evaluate, render_markdown

__all__ = [
    "ADVISED_FILMS",
    "MIN_FILMS",
    "CalibrationError",
    "CalibrationOutcome",
    "SiteFilms",
    "calibrate_site",
    "candidates",
    "cross_validate",
    "evaluate",
    "fit_calibration",
    "grouped_folds",
    "read_site_films",
    "render_markdown",
    "site_films",
]
