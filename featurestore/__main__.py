"""`python -m featurestore {generate,join,materialize}` in the feature store's environment.
A failure prints one line naming what is wrong and exits 1, with nothing written."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

from featurestore import REPO


def _write_atomically(path: Path, write) -> None:
    staging = path.with_name(path.name + ".tmp")
    write(staging)
    os.replace(staging, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m featurestore")
    sub = parser.add_subparsers(dest="command", required=True)
    generate = sub.add_parser("generate", help="the area aggregates from the span CSVs")
    generate.add_argument("--spans", required=True)
    generate.add_argument("--repo", default=REPO, type=Path)
    join = sub.add_parser("join", help="point-in-time join of an entity-and-label Parquet table")
    join.add_argument("--entities", required=True, type=Path)
    join.add_argument("--timestamp-column", required=True)
    join.add_argument("--out", required=True, type=Path)
    join.add_argument("--lineage", required=True, type=Path)
    join.add_argument("--repo", default=REPO, type=Path)
    materialize = sub.add_parser("materialize", help="load what is new into the online store")
    materialize.add_argument("--repo", default=REPO, type=Path)
    materialize.add_argument("--feature-store-yaml", type=Path, help="instead of the repository's")
    args = parser.parse_args(argv)
    try:
        if args.command == "generate":
            from featurestore import area_stats, datagen
            table = datagen.generate(args.spans, area_stats(args.repo))
            print(f"{area_stats(args.repo)}: {len(table)} rows")
        elif args.command == "join":
            import pandas as pd
            from featurestore import join as join_mod
            joined, record = join_mod.join(pd.read_parquet(args.entities), args.timestamp_column, args.repo)
            _write_atomically(args.out, lambda p: joined.to_parquet(p, index=False))
            _write_atomically(args.lineage, lambda p: p.write_text(json.dumps(record, indent=1)))
        else:
            from featurestore import materialize as materialize_mod
            print(json.dumps(materialize_mod.run(args.repo, dt.datetime.now(dt.timezone.utc),
                                                      args.feature_store_yaml)))
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"error: featurestore {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
