#!/usr/bin/env python3
"""Reads every Delta table of the demo's destinations with Delta Lake's own Python reader
(delta-rs) and checks it against the hours' complete markers: the rows of each (dt, hour) are
the events (or, in the merged IDs' table `P/-O`, the merged IDs) the hour's manifest counts, `version()` is the version the newest manifest names or
later, and every manifest's `table_version` is a version the reader can open.

    read-demo-delta-with-deltalake.py DEMO_DIR
"""
import glob
import gzip
import json
import os
import sys


def compare_with_json_merged_ids(demo, root, table, failures):
    """The same organisation's merged IDs exported as gzipped JSON lines by another demo
    connection (same hours, same lake): the Delta table must hold exactly those records."""
    org_dir = os.path.basename(root)
    json_files = [f for f in glob.glob(os.path.join(demo, "destinations", "**", org_dir, "**", "*.json.gz"), recursive=True)]
    if not json_files:
        failures.append(f"{root}: no JSON export of the merged IDs of {org_dir} to compare with")
        return
    fields = ["scope", "merge_time", "merge_server_time", "amplitude_id", "merged_amplitude_id"]
    from_table = sorted(tuple(r[f] for f in fields) for r in table.to_pyarrow_table(columns=fields).to_pylist())
    # One JSON copy per destination that holds the organisation's merged IDs.
    exports = {}
    for path in json_files:
        exports.setdefault(path.split(os.sep + org_dir + os.sep)[0], []).append(path)
    for destination, files in sorted(exports.items()):
        from_json = sorted(tuple(json.loads(line)[f] for f in fields) for path in files for line in gzip.open(path, "rt"))
        if from_json != from_table:
            failures.append(f"{root}: {len(from_table)} merged IDs in the table, {len(from_json)} in the JSON export in {destination}, or their values differ")
        else:
            print(f"deltalake: {root}: its {len(from_table)} merged IDs equal the JSON export's in {destination} ({len(files)} files)")


def main():
    demo = sys.argv[1]
    from deltalake import DeltaTable

    logs = sorted(glob.glob(os.path.join(demo, "destinations", "**", "_delta_log"), recursive=True))
    if not logs:
        print(f"no Delta table under {demo}/destinations", file=sys.stderr)
        sys.exit(1)
    failures = []
    for log in logs:
        root = os.path.dirname(log)
        table = DeltaTable(root)
        data = table.to_pyarrow_table(columns=["dt", "hour"]).to_pylist()
        rows = {}
        for r in data:
            key = f"{r['dt']}T{int(r['hour']):02d}"
            rows[key] = rows.get(key, 0) + 1
        # The merged IDs' table (`P/-O`) is counted by the markers beside the events (`P/A`).
        merged = os.path.basename(root).startswith("-")
        data_kind, version_field = ("merged_ids", "merged_ids_table_version") if merged else ("events", "table_version")
        expected, versions = {}, set()
        for marker in glob.glob(os.path.join(os.path.dirname(root), "**", "*_complete"), recursive=True):
            m = json.load(open(marker))
            exported = (m.get(data_kind) or {}).get("accounting", {}).get("exported", 0)
            if exported:
                expected[m["hour"]] = exported
            versions.add(m.get(version_field))
        if rows != expected:
            failures.append(f"{root}: rows per hour {rows}, the markers count {expected}")
        if None in versions or max(versions) > table.version():
            failures.append(f"{root}: manifests name versions {sorted(versions, key=str)}, the table is at {table.version()}")
        if merged:
            compare_with_json_merged_ids(demo, root, table, failures)
        for v in sorted(versions - {None}):
            DeltaTable(root, version=v).to_pyarrow_table(columns=["dt"])
        print(f"deltalake: {root} ({data_kind}): version {table.version()}, {len(data)} rows in {len(rows)} hours, as the markers count")
    if failures:
        for f in failures:
            print(f"FAILED: {f}", file=sys.stderr)
        sys.exit(1)
    # Leave without the interpreter's teardown (delta-rs's runtime sometimes aborts there).
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
