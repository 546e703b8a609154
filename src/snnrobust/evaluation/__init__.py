"""Evaluation: how robust a model is, with the threat model attached to every number.

- :mod:`.threat` — the threat model (norm, eps in pixel units, where the perturbation goes).
- :mod:`.victim` — the model under attack: eval mode, state reset, the attacker's gradient
  estimator, EOT over stochastic parts, majority-vote scoring, compute counting.
- :mod:`.suites` — named suites and budget presets, expanded into attack specs.
- :mod:`.request` — a validated evaluation request; suite defaults decided in one place.
- :mod:`.engine` — the stages: clean pass, main pass (cascade or not) with the per-sample worst
  case and crash safety, eps curve, diagnostics, result.
- :mod:`.diagnostics` — the gradient-masking checks (PASS / WARN / SKIP with their numbers).
- :mod:`.results`, :mod:`.metrics` — the typed result, its JSON, the table; Wilson intervals.

Typical use::

    from snnrobust.evaluation import ThreatModel, evaluate
    result = evaluate(model, x, y, suite="reliable", budget="quick", threat=ThreatModel(norm="linf", eps=0.1))
"""

from .engine import evaluate, run_evaluation
from .metrics import Rate
from .request import EvaluationRequest
from .results import AttackRecord, EvaluationResult, read_result, write_result
from .suites import BUDGETS, SUITES, Budget, get_budget, get_suite
from .threat import ThreatModel, format_eps, parse_eps
from .victim import Victim, code_range

__all__ = ["AttackRecord", "BUDGETS", "Budget", "EvaluationRequest", "EvaluationResult", "Rate", "SUITES",
           "ThreatModel", "Victim", "code_range", "evaluate", "format_eps", "get_budget", "get_suite", "parse_eps",
           "read_result", "run_evaluation", "write_result"]
