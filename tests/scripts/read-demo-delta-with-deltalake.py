#!/usr/bin/env python3
"""Reads every Delta table of the demo's destinations with Delta Lake's own Python reader
(delta-rs) and checks it against the hours' complete markers: the rows of each (dt, hour) are
the events the hour's manifest counts, `version()` is the version the newest manifest names or
later, and every manifest's `table_version` is a version the reader can open.

    read-demo-delta-with-deltalake.py DEMO_DIR
"""
import glob
import json
import os
import sys


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
        expected, versions = {}, set()
        for marker in glob.glob(os.path.join(root, "**", "*_complete"), recursive=True):
            m = json.load(open(marker))
            exported = m.get("events", {}).get("accounting", {}).get("exported", 0)
            if exported:
                expected[m["hour"]] = exported
            versions.add(m.get("table_version"))
        if rows != expected:
            failures.append(f"{root}: rows per hour {rows}, the markers count {expected}")
        if None in versions or max(versions) > table.version():
            failures.append(f"{root}: manifests name versions {sorted(versions, key=str)}, the table is at {table.version()}")
        for v in sorted(versions - {None}):
            DeltaTable(root, version=v).to_pyarrow_table(columns=["dt"])
        print(f"deltalake: {root}: version {table.version()}, {len(data)} rows in {len(rows)} hours, as the markers count")
    if failures:
        for f in failures:
            print(f"FAILED: {f}", file=sys.stderr)
        sys.exit(1)
    # Leave without the interpreter's teardown (delta-rs's runtime sometimes aborts there).
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
