"""Reads the demo's destinations the way an analyst would: DuckDB's read_json_auto with no
options for gzipped JSON parts, read_parquet with hive_partitioning for Parquet parts in
dt=/hour= folders. Fails (exit 1) unless every populated timestamp column is typed as a
timestamp, the Parquet columns have their documented types, the event count equals the sum
of `exported` over the hours' complete markers, and a WHERE on dt and hour returns exactly
that hour's events.

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


# The documented Parquet types (shared/src/export/columns.rs), as DuckDB names them.
PARQUET_TYPES = {
    "event_time": "TIMESTAMP WITH TIME ZONE",
    "server_upload_time": "TIMESTAMP WITH TIME ZONE",
    "amplitude_id": "BIGINT",
    "$schema": "BIGINT",
    "session_id": "BIGINT",
    "paying": "BOOLEAN",
    "location_lat": "DOUBLE",
    "event_properties": "VARCHAR",
    "uuid": "VARCHAR",
    "dt": "DATE",
    # `hour=03` is zero-padded, so DuckDB's detection keeps it VARCHAR (`hour = 3` still
    # compares); `exportctl ddl` declares it INTEGER with hive_types.
    "hour": "VARCHAR",
}


def markers(dest):
    """(hour key 'YYYY-MM-DD_H', exported) of every complete marker under dest."""
    out = []
    for marker in glob.glob(os.path.join(dest, "**", "*_complete"), recursive=True):
        with open(marker) as f:
            manifest = json.load(f)
        events = manifest.get("events") or {}
        out.append((manifest.get("hour"), events.get("accounting", {}).get("exported", 0)))
    return out


def manifest_policy(dest):
    """The field-policy digest of every complete marker under dest that names one."""
    out = []
    for marker in glob.glob(os.path.join(dest, "**", "*_complete"), recursive=True):
        with open(marker) as f:
            digest = json.load(f).get("field_policy")
        if digest:
            out.append(digest)
    return out


def exported_by_markers(dest):
    return sum(n for _, n in markers(dest))


def read_parquet_hive(con, dest, failures):
    # Event parts only (`{project}_...#n.parquet`): a Delta connection's merged IDs are
    # Parquet too (`-{org}_...#n.parquet`).
    parts = os.path.join(dest, "**", "[0-9]*#*.parquet")
    source = f"read_parquet('{parts}', hive_partitioning = true)"
    types = {name: kind for name, kind, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    for column, expected in PARQUET_TYPES.items():
        if types.get(column) != expected:
            failures.append(f"{dest}: Parquet column {column} is typed {types.get(column)}, not {expected}")
    rows = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
    expected = exported_by_markers(dest)
    if rows != expected or expected == 0:
        failures.append(f"{dest}: DuckDB reads {rows} Parquet events, the complete markers say {expected}")
    # Partition pruning: one hour by its dt= and hour= folders.
    hour, in_hour = max(markers(dest), key=lambda m: (m[1], m[0]))
    day, h = hour[:10], int(hour[11:13])
    pruned = con.execute(f"SELECT count(*), min(event_time)::VARCHAR, max(event_time)::VARCHAR FROM {source} WHERE dt = DATE '{day}' AND hour = {h}").fetchone()
    if pruned[0] != in_hour:
        failures.append(f"{dest}: WHERE dt = '{day}' AND hour = {h} returns {pruned[0]} events, the marker says {in_hour}")
    print(f"duckdb {duckdb.__version__}: {os.path.basename(dest)}: {rows} Parquet events (markers: {expected}); "
          f"dt = {day} AND hour = {h}: {pruned[0]} events (marker: {in_hour}); event_time {types.get('event_time')}")


def main(demo_dir):
    failures = []
    destinations = sorted(glob.glob(os.path.join(demo_dir, "destinations", "*")))
    if not destinations:
        failures.append(f"no destinations under {demo_dir}/destinations")
    con = duckdb.connect()
    for dest in destinations:
        if glob.glob(os.path.join(dest, "**", "[0-9]*#*.parquet"), recursive=True):
            read_parquet_hive(con, dest, failures)
            continue
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
        policy = ""
        if any(manifest_policy(dest)):
            # A field policy's pseudonyms are plain strings to read_json_auto, like the ids they replace.
            raw = con.execute(f"""SELECT count(*) FROM {source} WHERE user_id IS NOT NULL AND NOT regexp_full_match(user_id, '[0-9a-f]{{64}}')""").fetchone()[0]
            if types.get("user_id") != "VARCHAR" or raw:
                failures.append(f"{dest}: user_id is {types.get('user_id')} with {raw} values that are not pseudonyms")
            policy = f"; field policy {sorted(set(manifest_policy(dest)))[0][:19]}...: user_id all pseudonyms"
        print(f"duckdb {duckdb.__version__}: {os.path.basename(dest)}: {rows} events "
              f"(markers: {expected}), {with_event_time} with event_time; "
              f"TIMESTAMP columns: {', '.join(populated)}{policy}")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
