"""`exportctl metrics` read by the Prometheus client library's own text parser, as a scrape or
node_exporter's textfile collector reads it, with every value checked against the hour
ledger's files and `exportctl status --json`. Twice: at the demo's last run (nothing
overdue) and three hours later with no run in between (every connection late by the hours
it left untaken).

usage: metrics-with-prometheus-client.py HOME --exportctl PATH
"""

import argparse
import datetime
import glob
import json
import os
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families


def run(exportctl, home, at, *args):
    out = subprocess.run([exportctl, "--home", home, "--at", at, *args], check=True, capture_output=True, text=True)
    return out.stdout


def last_run_time(home):
    """The latest `ended` of the demo's run records: the demo's clock when it stopped."""
    ends = []
    for path in glob.glob(os.path.join(home, "control", "runs", "**", "*.json"), recursive=True):
        with open(path) as f:
            ends.append(json.load(f)["ended"])
    assert ends, f"no run records under {home}"
    return max(ends)


def owed_in_ledger(home, conn):
    """Owed hours whose marker is still to write (not late files, not a pending event)."""
    n = 0
    for path in glob.glob(os.path.join(home, "control", "ledger", conn, "owed", "*.json")):
        with open(path) as f:
            owed = json.load(f)
        if owed.get("mode", "recurring") != "late" and owed.get("event_pending") is None:
            n += 1
    return n


def check(exportctl, home, at, expect_late):
    text = run(exportctl, home, at, "metrics")
    status = json.loads(run(exportctl, home, at, "status", "--json"))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families, "no metric parsed"
    for f in families.values():
        assert f.type == "gauge" and f.documentation, f"{f.name}: type {f.type}, help {f.documentation!r}"

    def stack(name):
        samples = [s for s in families[name].samples if s.labels == {"stack": "embedded"}]
        assert len(samples) == 1, f"{name}: {families[name].samples}"
        return samples[0].value

    def per_connection(name):
        return {s.labels["connection"]: s.value for s in families[name].samples if "connection" in s.labels} if name in families else {}

    lines = {c["connection_id"]: c for c in status["connections"]}
    assert stack("event_export_connections") == len(lines) + len(status["unreadable"])
    assert stack("event_export_watchdog_runs") == 1
    owed = per_connection("event_export_connection_owed_hours")
    overdue = per_connection("event_export_connection_overdue_hours")
    failing = per_connection("event_export_connection_failing")
    last = per_connection("event_export_connection_last_freshness_seconds")
    slo = per_connection("event_export_connection_slo_met_ratio")
    assert set(owed) == set(lines), f"{sorted(owed)} vs {sorted(lines)}"
    for conn, line in lines.items():
        ledger = owed_in_ledger(home, conn)
        # The ledger's owed hours, plus settled hours no scheduled run took yet.
        assert owed[conn] >= ledger, f"{conn}: {owed[conn]} owed, the ledger holds {ledger}"
        if not expect_late:
            assert owed[conn] == ledger == len(line["owed"]), f"{conn} at {at}: {owed[conn]} vs ledger {ledger} vs status {len(line['owed'])}"
        late = "LATE:" in line["state"]
        assert (overdue[conn] > 0) == late, f"{conn} at {at}: overdue {overdue[conn]} but STATE {line['state']!r}"
        assert late == expect_late, f"{conn} at {at}: STATE {line['state']!r}"
        assert (failing[conn] == 1) == any(c.startswith(("FAILING", "RETRYING")) for c in line["conditions"]), f"{conn}: {line['conditions']}"
        if line["freshness"]["last"] is not None:
            assert last[conn] == line["freshness"]["last"]["freshness_seconds"], f"{conn}: {last[conn]} vs {line['freshness']}"
        if line["slo_met_ratio"] is not None:
            assert abs(slo[conn] - line["slo_met_ratio"]) < 1e-9, f"{conn}: {slo[conn]} vs {line['slo_met_ratio']}"
    assert stack("event_export_owed_hours") == sum(owed.values())
    assert stack("event_export_overdue_hours") == sum(overdue.values())
    assert stack("event_export_connections_late") == sum(1 for v in overdue.values() if v > 0)
    return len(text.splitlines()), sum(len(f.samples) for f in families.values())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("home")
    p.add_argument("--exportctl", required=True)
    a = p.parse_args()
    end = last_run_time(a.home)
    lines, samples = check(a.exportctl, a.home, end, expect_late=False)
    later = (datetime.datetime.fromisoformat(end.replace("Z", "+00:00")) + datetime.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    check(a.exportctl, a.home, later, expect_late=True)
    print(f"prometheus_client parsed exportctl metrics: {samples} samples in {lines} lines, checked against the ledger and status at {end} and {later}")


if __name__ == "__main__":
    sys.exit(main())
