"""The results sent back to the PACS: a DICOM Comprehensive SR per film, and optionally a heatmap.

What the SR records follows MONAI Deploy's text SR writer (the open reference for an AI result
object): the finding as text, the algorithm's name and version, a "not for clinical use"
statement, in the original film's study (patient and study modules copied from it) so a viewer
files it next to the film. Built with highdicom (which copies those modules and writes the
evidence sequence referencing the film); the content tree, one CONTAINS item per line:

    CONTAINER  (LN 18748-4) Diagnostic imaging report
      TEXT     (DCM 121071) Finding            "pneumonia (0.912); needs review: P(not healthy) 0.97 >= 0.94"
      CODE     (DCM 111001) Algorithm Name     the model file's name
      TEXT     (DCM 111003) Algorithm Version  the xscreen version
      TEXT     (99XSCREEN model-sha256)        the model file's SHA-256
      NUM      (99XSCREEN prob-<label>)        P(label), unit UCUM "1", one per class
      TEXT     (99XSCREEN review-flag)         "needs review" / "no review" / "no threshold"
      NUM      (99XSCREEN threshold)           the review threshold, when the model has one
      TEXT     (DCM 121106) Comment            "Not a medical device. ..."
      IMAGE    (SCT 260753009) Source          the screened film (SOP class + instance UID)

UIDs are derived from the film's SOP Instance UID and the model's SHA-256, so a film screened
again after a crash yields the same SR (same file in the outbox, same instance in the PACS).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np

from .. import __version__
from ..runtime import ScreeningModel, ScreeningResult

DISCLAIMER = ("Not a medical device. Research screening result by xscreen; it must not be used "
              "for diagnosis. A clinician reviews every film.")
SR_SERIES_NUMBER = 9901
HEATMAP_SERIES_NUMBER = 9902
HEATMAP_MAX_SIDE = 1024
XSCREEN_SCHEME = "99XSCREEN"  # private coding scheme (the "99" prefix is the standard's local one)


def _uid(*parts: str) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(p) for p in parts]))


def read_source_header(path: str | Path):
    """The film's header without pixels: what the SR copies (patient, study) and references."""
    import pydicom

    return pydicom.dcmread(path, stop_before_pixels=True)


def _quiet_highdicom(build):
    """highdicom warns about names copied from the film as they are (e.g. a one-word referring physician)."""
    @functools.wraps(build)
    def quiet(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return build(*args, **kwargs)
    return quiet


@_quiet_highdicom
def screening_report(source, result: ScreeningResult, model: ScreeningModel):
    """A highdicom ComprehensiveSR of ``result`` for the film whose header is ``source``."""
    import highdicom as hd
    from highdicom.sr import CodedConcept

    def own(code: str, meaning: str) -> CodedConcept:
        return CodedConcept(code, XSCREEN_SCHEME, meaning)

    contains = hd.sr.RelationshipTypeValues.CONTAINS
    unit = CodedConcept("1", "UCUM", "no units")
    items = [
        hd.sr.TextContentItem(CodedConcept("121071", "DCM", "Finding"), _finding(result), contains),
        hd.sr.CodeContentItem(CodedConcept("111001", "DCM", "Algorithm Name"),
                              own("model", model.path.name[:64]), contains),
        hd.sr.TextContentItem(CodedConcept("111003", "DCM", "Algorithm Version"), f"xscreen {__version__}",
                              contains),
        hd.sr.TextContentItem(own("model-sha256", "Model SHA-256"), model.sha256, contains),
    ]
    for label in model.labels:
        items.append(hd.sr.NumContentItem(own(f"prob-{label}"[:16], f"Probability of {label}"),
                                          round(result.probabilities[label], 6), unit, relationship_type=contains))
    review = {True: "needs review", False: "no review", None: "no threshold"}[result.flag]
    items.append(hd.sr.TextContentItem(own("review-flag", "Review flag"), review, contains))
    if model.metadata.threshold is not None:
        items.append(hd.sr.NumContentItem(own("threshold", "Review threshold"), model.metadata.threshold, unit,
                                          relationship_type=contains))
    items.append(hd.sr.TextContentItem(CodedConcept("121106", "DCM", "Comment"), DISCLAIMER, contains))
    items.append(hd.sr.ImageContentItem(CodedConcept("260753009", "SCT", "Source"), source.SOPClassUID,
                                        source.SOPInstanceUID, relationship_type=contains))
    root = hd.sr.ContainerContentItem(CodedConcept("18748-4", "LN", "Diagnostic imaging report"))
    root.ContentSequence = hd.sr.ContentSequence(items)
    report = hd.sr.ComprehensiveSR(
        evidence=[source], content=root,
        series_instance_uid=_uid(source.StudyInstanceUID, model.sha256, "xscreen-sr-series"),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=_uid(source.SOPInstanceUID, model.sha256, "xscreen-sr"),
        instance_number=int(source.get("InstanceNumber") or 1), manufacturer="xscreen", is_complete=True,
    )
    return _described(report, "xscreen screening (not a medical device)", model)


@_quiet_highdicom
def heatmap_capture(source, result: ScreeningResult, model: ScreeningModel):
    """A secondary capture of the film under its heatmap (RGB), in the film's study; None without a heatmap."""
    import highdicom as hd

    from ..report._overlay import caption_for, render_overlay
    from ..runtime import decode_radiograph

    if result.heatmap is None:
        return None
    film = decode_radiograph(result.path)
    caption = caption_for(result.prediction, result.probabilities[result.prediction], result.flag)
    pixels = np.asarray(render_overlay(film, result.heatmap, caption, HEATMAP_MAX_SIDE).convert("RGB"))
    orientation = tuple(source.get("PatientOrientation") or ())
    capture = hd.sc.SCImage.from_ref_dataset(
        source, pixels, "RGB", 8, "PATIENT",
        # a frontal chest film as it is displayed: the patient's left to the right, feet down
        patient_orientation=orientation if len(orientation) == 2 else ("L", "F"),
        series_instance_uid=_uid(source.StudyInstanceUID, model.sha256, "xscreen-heatmap-series"),
        series_number=HEATMAP_SERIES_NUMBER,
        sop_instance_uid=_uid(source.SOPInstanceUID, model.sha256, "xscreen-heatmap"),
        instance_number=int(source.get("InstanceNumber") or 1), manufacturer="xscreen",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )
    capture.BurnedInAnnotation = "YES"
    return _described(capture, "xscreen heatmap (not a medical device)", model)


def _described(dataset, description: str, model: ScreeningModel):
    dataset.SeriesDescription = description
    dataset.SoftwareVersions = f"xscreen {__version__}"
    dataset.ManufacturerModelName = model.path.name[:64]
    return dataset


def _finding(result: ScreeningResult) -> str:
    top = result.probabilities[result.prediction]
    why = f"; {result.review_reason}" if result.review_reason else ""
    review = {True: "; needs review", False: "; no review", None: ""}[result.flag]
    return f"{result.prediction} ({top:.3f}){review}{why}"
