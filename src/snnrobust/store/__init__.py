"""Resumable results store: content hashes, a SQLite store per study folder, CSV and tables.

Example::

    from snnrobust.store import ResultsStore, cached, file_sha256
    with ResultsStore("runs/pooling-tradeoff") as store:      # -> runs/pooling-tradeoff/results.sqlite
        payload, was_cached = cached(store, "evaluation", file_sha256(ckpt), config, lambda: run(config),
                                     label="max-pool / seed-luu2025", study="pooling-tradeoff")
"""

from .cache import cached
from .compare import comparison_table, format_table, records_table
from .export import CSV_COLUMNS, record_row, write_csv
from ..io import file_sha256  # the store keys results by a checkpoint's bytes
from .hashing import canonical_json, config_hash, to_json_value
from .results_store import RESULTS_FILENAME, SCHEMA_VERSION, Record, ResultsStore
from .summary import Headline, headline, is_evaluation

__all__ = [
    "CSV_COLUMNS",
    "RESULTS_FILENAME",
    "SCHEMA_VERSION",
    "Headline",
    "Record",
    "ResultsStore",
    "cached",
    "canonical_json",
    "comparison_table",
    "config_hash",
    "file_sha256",
    "format_table",
    "headline",
    "is_evaluation",
    "record_row",
    "records_table",
    "to_json_value",
    "write_csv",
]
