//! Freshness: exports that stop with no error (the hourly schedule removed) show as LATE in
//! `status` and in the watchdog's figures (`exportctl metrics`) once the SLO deadline
//! passes, and recover when the schedule is back; an hour completed late is recorded as a
//! missed SLO in its run record and its Hour Exported event.

use exporter::hour::HourRange;

use crate::world::*;

/// One sample of `exportctl metrics`: `name{labels} value`.
fn sample(metrics: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}{{{labels}}} ");
    let line = metrics.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {prefix} in:\n{metrics}"));
    line[prefix.len()..].parse().unwrap()
}

#[test]
fn exports_that_stop_silently_turn_late_at_the_deadline_and_recover_when_the_schedule_is_back() {
    let w = World::new("2020-01-25T00..2020-01-25T09", 50);
    w.replay("2020-01-25T01:20:00Z", "2020-01-25T03:20:00Z", |_| {});
    let stack = "stack=\"embedded\"";
    let fine = w.ok(&["metrics"], "2020-01-25T03:30:00Z");
    assert_eq!(sample(&fine, "event_export_overdue_hours", stack), 0.0, "{fine}");
    assert_eq!(w.state(CONN, "2020-01-25T03:30:00Z"), "ok");

    // The hourly schedule disappears (deleted by hand, a broken deployment): no run, no error.
    let schedule = w.home.join("schedules/hourly").join(format!("hourly-{CONN}.json"));
    assert!(schedule.exists(), "the embedded schedule file is where this test expects it");
    std::fs::remove_file(&schedule).unwrap();
    w.replay("2020-01-25T04:20:00Z", "2020-01-25T05:55:00Z", |_| {});
    // Hour 03 ended at 04:00; its marker was due by 05:00. Until then status cannot tell
    // silence from a run about to come; one minute after, it must.
    assert!(!w.state(CONN, "2020-01-25T04:59:00Z").contains("LATE"), "not late before the deadline");
    let state = w.state(CONN, "2020-01-25T05:01:00Z");
    assert!(state.contains("LATE: 1 hour(s) past the freshness SLO of 1h00m (oldest 2020-01-25T03, due 2020-01-25T05:00"), "{state}");
    assert!(state.contains("no scheduled run has taken hours since 2020-01-25T02") && state.contains("exportctl connections enable c1"), "{state}");
    let json: serde_json::Value = serde_json::from_str(&w.ok(&["status", "--json"], "2020-01-25T06:05:00Z")).unwrap();
    let line = &json["connections"][0];
    assert_eq!(line["connection_id"], CONN);
    assert!(line["state"].as_str().unwrap().contains("LATE: 2 hour(s)"), "{line}");
    assert_eq!(line["freshness"]["due"], 5, "hours 00-04 were due by 06:05: {line}");
    assert_eq!(line["freshness"]["met"], 3, "00-02 met the SLO, 03 and 04 did not: {line}");

    let late = w.ok(&["metrics"], "2020-01-25T06:05:00Z");
    assert_eq!(sample(&late, "event_export_connections_late", stack), 1.0, "{late}");
    assert_eq!(sample(&late, "event_export_overdue_hours", stack), 2.0, "{late}");
    assert_eq!(sample(&late, "event_export_oldest_owed_hour_age_seconds", stack), 7500.0, "hour 03 ended at 04:00: {late}");
    let conn = format!("{stack},connection=\"{CONN}\"");
    assert_eq!(sample(&late, "event_export_connection_overdue_hours", &conn), 2.0, "{late}");

    // The operator follows the hint: the schedule is back, the next run catches up.
    w.ok(&["connections", "enable", CONN], "2020-01-25T06:10:00Z");
    assert!(schedule.exists());
    w.replay("2020-01-25T06:20:00Z", "2020-01-25T06:20:00Z", |_| {});
    assert_eq!(w.state(CONN, "2020-01-25T06:25:00Z"), "ok");
    let recovered = w.ok(&["metrics"], "2020-01-25T06:25:00Z");
    assert_eq!(sample(&recovered, "event_export_connections_late", stack), 0.0, "{recovered}");
    assert_eq!(sample(&recovered, "event_export_overdue_hours", stack), 0.0, "{recovered}");

    // The hours exported late say so where an operator and a loader look.
    let runs = w.ok(&["runs", CONN], "2020-01-25T06:30:00Z");
    let run_of = |hour: &str| runs.lines().find(|l| l.starts_with(hour) && l.contains(" exported ")).unwrap_or_else(|| panic!("{hour}:\n{runs}")).to_string();
    assert!(run_of("2020-01-25T02").contains(" 20m "), "{runs}");
    assert!(run_of("2020-01-25T03").contains(" 2h20m! "), "past the SLO: {runs}");
    let events_dir = w.home.join("events").join(CONN);
    let event_of = |hour: &str| -> serde_json::Value {
        let file = std::fs::read_dir(&events_dir).unwrap().flatten().find(|e| e.file_name().to_string_lossy().starts_with(hour)).unwrap().path();
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(file).unwrap()).unwrap()["detail"].clone()
    };
    assert_eq!(event_of("2020-01-25T02")["freshness_seconds"], 1200, "exported at 03:20, 20 minutes after the hour: {runs}");
    assert_eq!(event_of("2020-01-25T03")["freshness_seconds"], 8400, "exported at 06:20: {runs}");
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(w.home.join("control/freshness").join(CONN).join("2020-01-25").join("03.json")).expect("hour 03's freshness is kept"),
    )
    .unwrap();
    assert_eq!((record["met"].as_bool(), record["freshness_seconds"].as_i64()), (Some(false), Some(8400)));
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T05").unwrap());
}
