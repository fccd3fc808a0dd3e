"""Reads the demo's destinations the way an analyst would: DuckDB's read_json_auto with no
options. Fails (exit 1) unless every populated timestamp column is typed TIMESTAMP and the
event count equals the sum of `exported` over the hours' complete markers.

Usage: python read-demo-with-duckdb.py DEMO_DIR
"""
import glob
import json
import os
import sys

import duckdb

TIMESTAMP_COLUMNS = [
    "server_received_time", "event_time", "processed_time", "user_creation_time",
    "client_upload_time", "server_upload_time", "client_event_time",
]


def exported_by_markers(dest):
    total = 0
    for marker in glob.glob(os.path.join(dest, "**", "*_complete"), recursive=True):
        with open(marker) as f:
            events = json.load(f).get("events") or {}
        total += events.get("accounting", {}).get("exported", 0)
    return total


def main(demo_dir):
    failures = []
    destinations = sorted(glob.glob(os.path.join(demo_dir, "destinations", "*")))
    if not destinations:
        failures.append(f"no destinations under {demo_dir}/destinations")
    con = duckdb.connect()
    for dest in destinations:
        # Event parts only: `**/*.json.gz` would also match the merged-IDs files.
        parts = os.path.join(dest, "**", "*#*.json.gz")
        source = f"read_json_auto('{parts}')"
        types = {name: kind for name, kind, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        populated = [c for c in TIMESTAMP_COLUMNS if con.execute(f'SELECT count("{c}") FROM {source}').fetchone()[0] > 0]
        for column in populated:
            if types.get(column) != "TIMESTAMP":
                failures.append(f"{dest}: {column} is typed {types.get(column)}, not TIMESTAMP")
        rows, with_event_time = con.execute(f"SELECT count(*), count(event_time) FROM {source}").fetchone()
        expected = exported_by_markers(dest)
        if rows != expected or expected == 0:
            failures.append(f"{dest}: DuckDB reads {rows} events, the complete markers say {expected}")
        print(f"duckdb {duckdb.__version__}: {os.path.basename(dest)}: {rows} events "
              f"(markers: {expected}), {with_event_time} with event_time; "
              f"TIMESTAMP columns: {', '.join(populated)}")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
