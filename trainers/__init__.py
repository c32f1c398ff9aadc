"""paretune.trainers: models and data, applying plans, the training loop, adapter export.

Imports torch; the driver imports this package only inside trial workers.
"""

from __future__ import annotations

from .export import load_adapted
from .run import build_trial_model, train_trial

__all__ = ["build_trial_model", "load_adapted", "train_trial"]
