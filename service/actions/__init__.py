"""Control actions from forecasts: the action policy (rules with hysteresis) and its configuration."""

from service.actions.config import MODES, ActionConfig
from service.actions.policy import KINDS, Action, ActionPolicy

__all__ = ["KINDS", "MODES", "Action", "ActionConfig", "ActionPolicy"]
