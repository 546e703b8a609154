"""ANN-to-SNN conversion and hybrid fine-tuning (Sharmin et al. 2020's SNN-conv and SNN-BP).

- :func:`convert_model` / :func:`convert_checkpoint`: an ANN (ReLU twin) -> an SNN of IF
  neurons with per-layer thresholds (layer-wise balancing or a percentile), BatchNorm folded;
- :class:`ConversionReport`: the conversion's own error (accuracy over T, per-layer rate error);
- :func:`load_ann_source`: the source ANN stored in a converted or fine-tuned checkpoint;
- :mod:`.hybrid`: ``snnrobust train --init-from`` (SNN-BP fine-tuning of a converted SNN).
"""

from .balance import balance_thresholds, percentile_thresholds
from .convert import Conversion, ConversionConfig, ConvertResult, convert_checkpoint, convert_model
from .fold import fold_batchnorm
from .provenance import has_ann_source, load_ann_source
from .report import ConversionReport, measure_conversion
from .structure import Stage, trace_stages

__all__ = ["balance_thresholds", "percentile_thresholds", "Conversion", "ConversionConfig", "ConvertResult",
           "convert_checkpoint", "convert_model", "fold_batchnorm", "has_ann_source", "load_ann_source",
           "ConversionReport", "measure_conversion", "Stage", "trace_stages"]
