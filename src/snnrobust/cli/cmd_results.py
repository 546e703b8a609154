"""`snnrobust results`: list, compare and export the results stored in study folders."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import SnnRobustError
from ..store import RESULTS_FILENAME, ResultsStore, comparison_table, headline, records_table, write_csv
from ..store.journal import KIND as JOURNAL_KIND


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "results",
        help="list and compare stored results, export CSV",
        description=(
            f"List the results stored in each FOLDER's {RESULTS_FILENAME} (or in a database file given "
            "directly; a folder without one is searched one level down). With several folders, results "
            "with the same label are also shown side by side. Accuracies are in percent with 95% Wilson "
            "intervals; 'key' is <checkpoint sha256>/<config sha256>, shortened."
        ),
    )
    p.add_argument("folders", nargs="*", metavar="FOLDER", default=["."],
                   help=f"study folder or {RESULTS_FILENAME} file (default: the current folder)")
    p.add_argument("--kind", help="only this kind of result (e.g. train, evaluation, sparsity, vulnerability)")
    p.add_argument("--study", help="only results of this study")
    p.add_argument("--csv", metavar="OUT.csv", help="also write every listed result to this CSV file")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    p.set_defaults(func=run)


def find_databases(arg: str) -> list[Path]:
    """The result databases named by one FOLDER argument (a folder, or the database file)."""
    p = Path(arg)
    if not p.exists():
        raise SnnRobustError(f"{arg}: no such folder or file; give a study folder that holds {RESULTS_FILENAME}")
    if p.is_file():
        return [p]
    if (p / RESULTS_FILENAME).is_file():
        return [p / RESULTS_FILENAME]
    found = sorted(q for q in p.glob(f"*/{RESULTS_FILENAME}") if q.is_file())
    if not found:
        raise SnnRobustError(
            f"{arg}: no {RESULTS_FILENAME} here; run `snnrobust study NAME` first "
            "or give the study folder that holds it"
        )
    return found


def _source_name(db: Path) -> str:
    return str(db.parent if db.name == RESULTS_FILENAME else db)


def run(args: argparse.Namespace) -> int:
    dbs: list[Path] = []
    for arg in args.folders or ["."]:
        for db in find_databases(arg):
            if db.resolve() not in {d.resolve() for d in dbs}:
                dbs.append(db)
    sources: dict[str, list] = {}
    for db in dbs:
        with ResultsStore(db, readonly=True) as store:
            recs = store.records(kind=args.kind, study=args.study)
            if args.kind is None:  # a journal's batches are an evaluation in progress, not a result
                recs = [r for r in recs if r.kind != JOURNAL_KIND]
            sources[_source_name(db)] = recs

    if args.csv:
        recs = [r for rs in sources.values() for r in rs]
        names = [name for name, rs in sources.items() for _ in rs]
        out = write_csv(args.csv, recs, sources=names)

    if args.json:
        doc = {
            "sources": [
                {"path": name,
                 "records": [{**r.to_dict(), "headline": headline(r.payload).to_dict()} for r in recs]}
                for name, recs in sources.items()
            ]
        }  # fmt: skip
        print(json.dumps(doc, indent=2))
    else:
        for name, recs in sources.items():
            print(f"== {name}: {len(recs)} result{'s' if len(recs) != 1 else ''}"
                  + (f" of kind {args.kind}" if args.kind else "") + " ==")
            print(records_table(recs) if recs else "(none)")
            print()
        if len(sources) > 1:
            print("== side by side (same kind and label) ==")
            print(comparison_table(sources))
        if args.csv:
            print(f"wrote {sum(len(r) for r in sources.values())} rows to {out}")
    return 0
