"""The study report: one self-contained HTML page and a markdown summary.

>>> from snnrobust.report import write_report
>>> paths = write_report(study, "runs/pooling-tradeoff")   # {"html": Path, "markdown": Path}

``study`` is a JSON-like dict built by the study runner::

    {"study", "size", "description", "created", "seconds",
     "dataset": DatasetInfo.to_dict(),
     "models": [{"label", "group", "model_config", "train_config", "checkpoint", "checkpoint_sha256",
                 "clean_accuracy": {k, n, value, ci}, "train_metrics": [{epoch, train_loss, test_accuracy}]}],
     "evaluations": [{"model", "protocol", "weak": bool, "result": <snnrobust.evaluation/1 JSON>}],
     "sparsity": [{"model", "source": "attack" | "train", "result": SparsityReport.to_dict()}],
     "vulnerability": [{"model", "result": VulnerabilityReport.to_dict()}],
     "claims": [{"id", "seed", "text", "checks": [{"metric", "expect", "a", "b", "protocol"?, ...}]}]}

Every part is optional; what is missing renders as "not measured". Each stored result is read
once through its typed reader (:func:`snnrobust.report.read.load`); one its reader rejects is
listed as unreadable and no verdict rests on it. Verdict rules are in
:mod:`snnrobust.report.verdicts`.
"""

from .sections import SECTION_IDS, build_sections
from .verdicts import (ROBUST_FRACTION, ClaimVerdict, ModelVerdict, all_verdicts, claim_verdict, decide,
                       evaluate_check, model_verdict)
from .writer import write_report

__all__ = ["write_report", "build_sections", "SECTION_IDS", "ROBUST_FRACTION", "ModelVerdict", "ClaimVerdict",
           "model_verdict", "claim_verdict", "evaluate_check", "decide", "all_verdicts"]
