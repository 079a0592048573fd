"""Shortcuts: one of resdyn's studies run with one call (:func:`run_stability`)."""

from __future__ import annotations

from torch import nn

from ..data import Dataset
from .runner import StudyResult, run_study
from .stability import STABILITY, StabilityConfig


def run_stability(model: nn.Module, data: Dataset, out, config: StabilityConfig | None = None,
                  **kwargs) -> StudyResult:
    """Run the stability study of paper 000 (:func:`resdyn.studies.runner.run_study` on
    :data:`STABILITY`; keyword arguments as there: model_name, executor, progress, fresh).

    Example:
        >>> from resdyn import load_model, load_data
        >>> import tempfile
        >>> quick = StabilityConfig(images=2, alphas=(0.0, 1.0), ts=(0.0, 1.0), stage_spectra=False)
        >>> r = run_stability(load_model("digits-resnet20"), load_data("digits"), tempfile.mkdtemp(),
        ...                   quick)
        >>> sorted(r.figures)[:2]
        ['fig1_scree', 'fig2_bins']
    """
    return run_study(STABILITY, model, data, config, out, **kwargs)
