#!/usr/bin/env python3
"""The hour export a data engineer would write with DuckDB instead of ours, for comparison.

Reads every lake file of one hour (gzipped JSON lines) with read_ndjson, keeps one event
per (device_id, $insert_id), selects the 49 export fields in the export's order and
writes one Parquet file with zstd, like our Parquet parts. Prints its wall time.

    exportctl bench --events 500000 --format parquet --dir /tmp/hour   # our export, keeps the lake
    python3 bench/duckdb_export.py /tmp/hour/lake /tmp/hour/duckdb.parquet

(DuckDB 2.0 is in the emulator venv: `source tests/scripts/env.sh; $EMULATOR_VENV/bin/python3 ...`.)
"""
import argparse
import glob
import os
import time

import duckdb

# The export's fields in order (shared/src/export/schema.rs, EXPORT_FIELDS).
FIELDS = [
    "server_received_time", "app", "device_carrier", "$schema", "city", "user_id", "uuid",
    "event_time", "platform", "os_version", "amplitude_id", "processed_time",
    "user_creation_time", "version_name", "ip_address", "paying", "dma", "group_properties",
    "user_properties", "client_upload_time", "$insert_id", "event_type", "library",
    "amplitude_attribution_ids", "device_type", "device_manufacturer", "start_version",
    "location_lng", "server_upload_time", "event_id", "location_lat", "os_name",
    "amplitude_event_type", "device_brand", "groups", "event_properties", "data", "device_id",
    "language", "device_model", "country", "region", "is_attribution_event", "adid",
    "session_id", "device_family", "sample_rate", "idfa", "client_event_time",
]
assert len(FIELDS) == 49
TIMESTAMPS = {"server_received_time", "event_time", "processed_time", "user_creation_time", "client_upload_time", "server_upload_time", "client_event_time"}
INTS = {"app", "$schema", "amplitude_id", "event_id", "session_id"}
FLOATS = {"location_lat", "location_lng"}
BOOLS = {"paying", "is_attribution_event"}
JSONS = {"group_properties", "user_properties", "groups", "event_properties", "data", "amplitude_attribution_ids"}


def column_type(field):
    for names, t in ((TIMESTAMPS, "TIMESTAMP"), (INTS, "BIGINT"), (FLOATS, "DOUBLE"), (BOOLS, "BOOLEAN"), (JSONS, "JSON")):
        if field in names:
            return t
    return "VARCHAR"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lake", help="folder holding the hour's lake files (searched recursively)")
    p.add_argument("out", help="Parquet file to write")
    p.add_argument("--threads", type=int, default=0, help="DuckDB threads (0 = its default, one per core)")
    args = p.parse_args()
    files = sorted(glob.glob(os.path.join(args.lake, "**", "*.json*"), recursive=True))
    if not files:
        raise SystemExit(f"no lake files under {args.lake}")
    start = time.perf_counter()
    con = duckdb.connect()
    if args.threads:
        con.execute(f"SET threads = {args.threads}")
    # The columns and their types given up front, as our Parquet schema has them
    # (shared/src/export/columns.rs): no sniffing pass over the files, and a field absent
    # from the lake reads as NULL.
    columns = ", ".join(f"'{f}': '{column_type(f)}'" for f in FIELDS)
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    con.execute(f"CREATE VIEW lake AS SELECT * FROM read_ndjson([{listed}], columns = {{{columns}}})")
    cols = ", ".join(f'"{f}"' for f in FIELDS)
    out = args.out.replace("'", "''")
    con.execute(
        f"""COPY (
              SELECT {cols} FROM lake
              QUALIFY row_number() OVER (PARTITION BY device_id, "$insert_id") = 1
            ) TO '{out}' (FORMAT parquet, COMPRESSION zstd)"""
    )
    seconds = time.perf_counter() - start
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
    print(f"duckdb {duckdb.__version__}: {len(files)} lake files, {rows} events, {seconds:.2f} s, {rows / seconds:.0f} events/s")


if __name__ == "__main__":
    main()
