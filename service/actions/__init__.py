"""Forecast intervals and control actions: online conformal intervals per cell, and the action policy."""

from service.actions.conformal import ConformalIntervals
from service.actions.policy import KINDS, MODES, Action, ActionConfig, ActionPolicy

__all__ = ["KINDS", "MODES", "Action", "ActionConfig", "ActionPolicy", "ConformalIntervals"]
