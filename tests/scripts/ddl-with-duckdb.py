"""Runs what `exportctl ddl CONNECTION --engine duckdb` prints, in DuckDB, for every connection
of a home, and checks the tables it makes against the hours' complete markers:

- the events table has exactly the events the markers count (`events.accounting.exported`),
  and the merged-IDs table exactly the merged IDs they count;
- the seven timestamps are typed TIMESTAMP (TIMESTAMP WITH TIME ZONE for Parquet parts) and
  every event has its server_upload_time; ids are BIGINT, booleans BOOLEAN, maps JSON;
- a hive-layout connection's table has typed dt (DATE) and hour (INTEGER) columns, and
  `WHERE dt = ... AND hour = ...` returns exactly that hour's exported events.

A Delta connection's (`"table": "delta"`) statements read the Delta log with `delta_scan`,
from DuckDB's delta extension, which DuckDB downloads from the network on first use: they
are not run here. The script still checks that `exportctl ddl` prints one `delta_scan` view
per exported kind, and prints that it skipped running them and why.

Exits 1 naming every check that failed.

Usage: python ddl-with-duckdb.py HOME [--exportctl PATH]
  HOME       an exportctl home (the demo's is DEMO_DIR/home)
  PATH       the exportctl binary (default: cargo run -q --locked -p exportctl --)
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys

import duckdb

TIMESTAMPS = [
    "server_received_time", "event_time", "processed_time", "user_creation_time",
    "client_upload_time", "server_upload_time", "client_event_time",
]
IDS = ["app", "$schema", "amplitude_id", "event_id", "session_id"]
BOOLEANS = ["paying", "is_attribution_event"]
MAPS = ["event_properties", "user_properties", "group_properties", "groups", "data"]
MERGE_FIELDS = ["scope", "merge_time", "merge_server_time", "amplitude_id", "merged_amplitude_id"]


def folder(destination, *names):
    """A local destination's folder for `names` under its prefix."""
    if destination.get("type") != "local":
        return None
    parts = [destination["path"]] + [p for p in [destination.get("prefix", "").strip("/")] if p] + list(names)
    return os.path.join(*parts)


def markers(directory, hive):
    """Every complete marker in a data folder, with the dt/hour folder it sits in (hive)."""
    pattern = os.path.join(directory, "dt=*", "hour=*", "_*_complete") if hive else os.path.join(directory, "*_complete")
    found = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            manifest = json.load(f)
        where = re.search(r"/dt=([0-9-]+)/hour=([0-9]+)/[^/]+$", path)
        found.append((path, manifest, (where.group(1), int(where.group(2))) if where else None))
    return found


def merged_ids_of_hour(home, manifest, hive):
    """The merged IDs of a marker's hour: its own, or, when another connection of the
    organisation writes them (`merged_ids_written_by`), the owner's marker of that hour."""
    owner = manifest.get("merged_ids_written_by")
    if manifest.get("merged_ids") or not owner:
        return exported(manifest, "merged_ids")
    with open(os.path.join(home, "control", "connections", f"{owner}.json")) as f:
        conn = json.load(f)
    owner_dir = folder(conn["destination"], conn["project_id"])
    for _, theirs, _ in markers(owner_dir, hive):
        if theirs.get("hour") == manifest.get("hour"):
            return exported(theirs, "merged_ids")
    return 0


def exported(manifest, kind):
    return ((manifest.get(kind) or {}).get("accounting") or {}).get("exported", 0)


def ddl(exportctl, home, connection):
    run = subprocess.run(exportctl + ["ddl", connection, "--engine", "duckdb", "--home", home], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"exportctl ddl {connection} exited {run.returncode}: {run.stderr.strip()}")
    return run.stdout


def check_field_policy(con, view, fields, fail):
    """The connection's `fields` policy, seen through the table `exportctl ddl` declares:
    dropped top-level columns are all NULL (the column is still there, with its type),
    dropped properties are absent, pseudonymised columns hold only 64-hex HMACs,
    addresses are cut to /24 or /48 and locations rounded."""
    checked = []
    for path in fields.get("drop", []):
        field, _, rest = path.partition(".")
        if not rest:
            left = con.execute(f'SELECT count("{field}") FROM "{view}"').fetchone()[0]
        elif rest.endswith("*"):
            continue
        else:
            json_path = "$." + ".".join(f'"{p}"' for p in rest.split("."))
            left = con.execute(f'SELECT count(*) FROM "{view}" WHERE json_extract("{field}", ?) IS NOT NULL', [json_path]).fetchone()[0]
        if left:
            fail(f"{view}: {left} rows still hold the dropped {path}")
        checked.append(path)
    for path in fields.get("pseudonymise", []):
        if "." in path:
            continue
        kind = dict((n, k) for n, k, *_ in con.execute(f'DESCRIBE "{view}"').fetchall()).get(path)
        raw = con.execute(f"""SELECT count(*) FROM "{view}" WHERE "{path}" IS NOT NULL AND NOT regexp_full_match("{path}", '[0-9a-f]{{64}}')""").fetchone()[0]
        if kind != "VARCHAR" or raw:
            fail(f"{view}: {path} is {kind} with {raw} values that are not pseudonyms")
        checked.append(path)
    if fields.get("truncate_ip"):
        bad = con.execute(f"""SELECT count(*) FROM "{view}" WHERE ip_address IS NOT NULL AND NOT (ip_address LIKE '%.0' OR ip_address LIKE '%::')""").fetchone()[0]
        if bad:
            fail(f"{view}: {bad} ip_address values are not cut to their network")
        checked.append("ip_address")
    if fields.get("location_decimals") is not None:
        n = fields["location_decimals"]
        bad = con.execute(f'SELECT count(*) FROM "{view}" WHERE abs(location_lat - round(location_lat, {n})) > 1e-9 OR abs(location_lng - round(location_lng, {n})) > 1e-9').fetchone()[0]
        if bad:
            fail(f"{view}: {bad} locations have more than {n} decimals")
        checked.append("location")
    return f"field policy holds for {', '.join(checked)}"


def check_delta_connection(exportctl, home, conn, kinds, fail):
    """The views over the Delta log are printed, one per exported kind; running them needs
    the delta extension, which this offline suite cannot download."""
    cid = conn["id"]
    sql = ddl(exportctl, home, cid)
    views = dict((kind, name) for name, kind in re.findall(r'CREATE OR REPLACE VIEW "([^"]+_(events|merged_ids))" AS\n(?:.*\n)*?FROM delta_scan\(', sql))
    for kind in ("events", "merged_ids"):
        if kinds.get(kind, True) and kind not in views:
            fail(f"exportctl ddl printed no delta_scan view for its {kind}\n{sql}")
    print(f"duckdb {duckdb.__version__}: exportctl ddl {cid} (Delta Lake tables): SKIPPED running {', '.join(sorted(views.values()))}: "
          "delta_scan needs DuckDB's delta extension, downloaded from the network, which these tests do not reach")


def check_connection(exportctl, home, conn, failures):
    cid = conn["id"]
    fail = lambda message: failures.append(f"{cid}: {message}")
    kinds = conn.get("export") or {"events": True, "merged_ids": True}
    if conn.get("table") == "delta":
        check_delta_connection(exportctl, home, conn, kinds, fail)
        return
    hive = conn.get("layout", "amplitude") == "hive"
    parquet = conn.get("format", "json") == "parquet"
    events_dir = folder(conn["destination"], conn["project_id"])
    merges_dir = folder(conn.get("merged_ids_destination") or conn["destination"], f"-{conn['org_id']}")
    if (kinds.get("events", True) and events_dir is None) or (kinds.get("merged_ids", True) and merges_dir is None):
        fail("not a local-folder destination: DuckDB is checked on local exports only")
        return
    # The hour markers sit with the events (or with the merged IDs of a merged-IDs-only connection).
    hour_markers = markers(events_dir if kinds.get("events", True) else merges_dir, hive)
    if not hour_markers:
        fail(f"no complete markers under {events_dir}: nothing to count the table against")
        return

    sql = ddl(exportctl, home, cid)
    con = duckdb.connect()
    try:
        con.execute(sql)
    except duckdb.Error as e:
        fail(f"DuckDB refused the printed statements: {e}\n{sql}")
        return
    views = {kind: name for name, kind in re.findall(r'CREATE OR REPLACE VIEW "([^"]+_(events|merged_ids))"', sql)}
    summary = []

    if kinds.get("events", True):
        view = views.get("events")
        if view is None:
            fail("exportctl ddl printed no events view")
        else:
            expected = sum(exported(m, "events") for _, m, _ in hour_markers)
            rows, with_upload_time = con.execute(f'SELECT count(*), count(server_upload_time) FROM "{view}"').fetchone()
            if rows != expected or expected == 0:
                fail(f"{view} has {rows} events, the {len(hour_markers)} complete markers count {expected}")
            if with_upload_time != rows:
                fail(f"{view}: {rows - with_upload_time} events have no server_upload_time (timestamps not parsed)")
            types = {name: kind for name, kind, *_ in con.execute(f'DESCRIBE "{view}"').fetchall()}
            timestamp = "TIMESTAMP WITH TIME ZONE" if parquet else "TIMESTAMP"
            wanted = {c: timestamp for c in TIMESTAMPS} | {c: "BIGINT" for c in IDS} | {c: "BOOLEAN" for c in BOOLEANS} | {c: "JSON" for c in MAPS}
            if hive:
                wanted |= {"dt": "DATE", "hour": "INTEGER"}
            for column, kind in wanted.items():
                if types.get(column) != kind:
                    fail(f"{view}.{column} is typed {types.get(column)}, not {kind}")
            summary.append(f"{rows} events (markers: {expected})")
            if conn.get("fields"):
                summary.append(check_field_policy(con, view, conn["fields"], fail))
            if hive:
                busiest = max((m for m in hour_markers if m[2]), key=lambda m: exported(m[1], "events"), default=None)
                if busiest is None:
                    fail("hive layout, but no marker sits in a dt=/hour= folder")
                else:
                    (day, hour), count = busiest[2], exported(busiest[1], "events")
                    got = con.execute(f'SELECT count(*) FROM "{view}" WHERE dt = ? AND hour = ?', [day, hour]).fetchone()[0]
                    if got != count or count == 0:
                        fail(f"{view} WHERE dt = '{day}' AND hour = {hour} returns {got} events, its marker counts {count}")
                    summary.append(f"dt = '{day}' AND hour = {hour}: {got} (marker: {count})")

    if kinds.get("merged_ids", True):
        view = views.get("merged_ids")
        if view is None:
            fail("exportctl ddl printed no merged-IDs view")
        else:
            expected = sum(merged_ids_of_hour(home, m, hive) for _, m, _ in hour_markers)
            rows = con.execute(f'SELECT count(*) FROM "{view}"').fetchone()[0]
            if rows != expected:
                fail(f"{view} has {rows} merged IDs, the complete markers count {expected}")
            types = {name: kind for name, kind, *_ in con.execute(f'DESCRIBE "{view}"').fetchall()}
            for column in MERGE_FIELDS:
                if types.get(column) != "BIGINT":
                    fail(f"{view}.{column} is typed {types.get(column)}, not BIGINT")
            summary.append(f"{rows} merged IDs (markers: {expected})")

    layout = f"{conn.get('format', 'json')}, {conn.get('layout', 'amplitude')} layout"
    print(f"duckdb {duckdb.__version__}: exportctl ddl {cid} ({layout}): {'; '.join(summary)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("home")
    parser.add_argument("--exportctl")
    args = parser.parse_args()
    exportctl = [args.exportctl] if args.exportctl else ["cargo", "run", "-q", "--locked", "-p", "exportctl", "--"]
    documents = sorted(glob.glob(os.path.join(args.home, "control", "connections", "*.json")))
    failures = []
    if not documents:
        failures.append(f"no connections in {args.home}/control/connections")
    for path in documents:
        with open(path) as f:
            conn = json.load(f)
        try:
            check_connection(exportctl, args.home, conn, failures)
        except (RuntimeError, duckdb.Error) as e:
            failures.append(f"{conn.get('id', path)}: {e}")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
