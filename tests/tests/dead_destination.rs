//! A destination that stays dead costs one probe per hourly run, on the real stores: an S3
//! bucket on moto (through the S3-compatible path, with its own access key) and an Azure
//! container on Azurite (SAS over http). Once the connection's failure email is out, an
//! hourly run sends only the probe suite's requests (counted by a recording relay in front of
//! the emulator) and writes no part; once the bucket or container exists again, the same
//! hourly run exports every owed hour.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use exporter::adapters::azure::endpoint::EndpointRules;
use exporter::adapters::azure::store::AzureOptions;
use exporter::control::connection::Connection;
use exporter::control::projects::Project;
use exporter::delivery::failure::episode_key;
use exporter::delivery::retry::RetryPolicy;
use exporter::export::hour_export::ExportSettings;
use exporter::model::clock::Clock;
use exporter::model::destination::Destination;
use exporter::model::secret::Secret;
use exporter::ports::HourlySchedules;
use exporter::runtime::embedded::EmbeddedHome;
use exporter::runtime::factory::CloudContext;
use exporter::runtime::function_env::FactoryProber;
use integration_tests::azurite;
use integration_tests::emulators::{moto_url, unique_name};
use integration_tests::moto::{self, admin_config, create_bucket};
use integration_tests::relay::{recording_relay, RequestLog};
use serde_json::json;

const PROJECT: &str = "187520";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// An embedded home whose destinations are opened through `cloud`, with a connection to
/// `dest` created at 2020-01-25T00:05, a lake hour of 30 events at 03:00, and the clock
/// `now` the test moves.
async fn home(dest: Destination, cloud: CloudContext) -> (tempfile::TempDir, EmbeddedHome, Arc<Mutex<DateTime<Utc>>>) {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(Mutex::new(t("2020-01-25T00:05:00Z")));
    let clock: Clock = {
        let now = now.clone();
        Arc::new(move || *now.lock().unwrap())
    };
    let mut home = EmbeddedHome::open(dir.path(), ExportSettings::standard().unwrap(), RetryPolicy::default(), clock).unwrap();
    home.runs.destinations = Arc::new(cloud.clone());
    let runner = Arc::new(home.runs.clone());
    home.services.runner = runner.clone();
    home.services.scheduled = runner;
    home.services.failure.prober = Arc::new(FactoryProber::new(cloud));
    home.control.add_project(&Project::new(PROJECT, "42", false).unwrap()).await.unwrap();
    let conn = Connection::from_json(
        &json!({"id": "dead", "org_id": "42", "project_id": PROJECT, "destination": dest, "created": "2020-01-25T00:05:00Z",
            "admins": ["admin@example.com"], "creator": "owner@example.com"})
        .to_string(),
    )
    .unwrap();
    home.control.create_connection(conn, t("2020-01-25T00:05:00Z")).await.unwrap();
    home.scheduler.put_hourly("dead", true).await.unwrap();
    let lake_hour = dir.path().join(format!("lake/events/{PROJECT}/2020-01-25/03"));
    std::fs::create_dir_all(&lake_hour).unwrap();
    let mut lines = String::new();
    for i in 0..30 {
        lines.push_str(&format!(
            "{}\n",
            json!({"event_type": "click", "device_id": format!("d{i}"), "$insert_id": format!("i{i}"),
                "client_event_time": "2020-01-25 03:01:00.000000", "client_upload_time": "2020-01-25 03:01:01.000000",
                "server_received_time": "2020-01-25 03:01:02.000000", "server_upload_time": "2020-01-25 03:01:03.000000"})
        ));
    }
    std::fs::write(lake_hour.join("a.json"), lines).unwrap();
    // The destination was dead through the whole retry schedule: the email went out at 05:00.
    let episode = json!({"since": "2020-01-25T01:20:00Z", "first_hour": "2020-01-25T00", "last_error": "destination missing",
        "emailed_at": "2020-01-25T05:00:00Z", "message_id": "m-1"});
    home.control.store().put(&episode_key("dead"), serde_json::to_vec(&episode).unwrap().into()).await.unwrap();
    (dir, home, now)
}

/// One hourly run at `at`; what the relay saw during it.
async fn hourly(
    home: &EmbeddedHome,
    now: &Mutex<DateTime<Utc>>,
    log: &RequestLog,
    at: &str,
) -> (exporter::delivery::invocation::HourlyResponse, Vec<(String, String, String)>) {
    *now.lock().unwrap() = t(at);
    let before = log.requests().len();
    let response = home.fire_hourly("dead", t(at)).await.unwrap();
    (response, log.requests()[before..].to_vec())
}

fn part_writes(requests: &[(String, String, String)]) -> usize {
    requests.iter().filter(|(method, path, _)| method != "GET" && method != "HEAD" && path.contains("json.gz")).count()
}

#[tokio::test]
async fn a_dead_s3_bucket_costs_one_probe_per_hourly_run_until_it_is_back() {
    let url = moto_url();
    let (port, log) = recording_relay(&url).await;
    let bucket = unique_name("dead-bucket");
    let endpoint = format!("http://localhost:{port}");
    let dest = Destination::s3_compatible(&endpoint, &bucket, "exports", moto::REGION, true, "AKIADEADDEST", Secret::new("dead-destination-secret"));
    let cloud = CloudContext { aws: None, azure: AzureOptions { endpoints: EndpointRules::emulators(), ..Default::default() }, local_folders: false };
    let (_dir, home, now) = home(dest, cloud).await;

    for at in ["2020-01-25T06:20:00Z", "2020-01-25T07:20:00Z"] {
        let (response, requests) = hourly(&home, &now, &log, at).await;
        let deferred = response.deferred.unwrap_or_else(|| panic!("{at}: the run exported instead of probing: {:?}", response.hours));
        assert!(deferred.still_failing[0].contains(&bucket), "{deferred:?}");
        assert!(response.hours.is_empty(), "no export attempt: {:?}", response.hours);
        assert_eq!(part_writes(&requests), 0, "{at}: {requests:?}");
        assert!(!requests.is_empty() && requests.len() <= 8, "{at}: the probe alone, {} requests: {requests:?}", requests.len());
        eprintln!("S3 dead destination, hourly run at {at}: {} requests (the probe suite)", requests.len());
    }
    assert!(home.control.list_runs("dead").await.unwrap().is_empty(), "no run was attempted while the bucket was gone");

    create_bucket(&admin_config(&url), &bucket).await;
    let (response, requests) = hourly(&home, &now, &log, "2020-01-25T08:20:00Z").await;
    assert!(response.deferred.is_none());
    assert_eq!(response.hours.len(), 8, "hours 00..07 exported: {:?}", response.hours);
    assert!(response.hours.iter().all(|h| h.succeeded()), "{:?}", response.hours);
    assert!(part_writes(&requests) >= 1, "the owed hours were written: {requests:?}");
    assert!(home.runs.ledger.owed("dead").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_dead_azure_container_costs_one_probe_per_hourly_run_until_it_is_back() {
    let (port, log) = recording_relay(azurite::http_url().trim_end_matches("/devstoreaccount1")).await;
    let container = unique_name("dead-container");
    let account_url = format!("http://127.0.0.1:{port}/devstoreaccount1");
    let dest = Destination::Azure {
        account_url: account_url.clone(),
        container: container.clone(),
        prefix: "exports".into(),
        tenant_id: None,
        client_id: None,
        client_secret: None,
        sas_token: Some(Secret::new(azurite::account_sas(azurite::ALL_PERMISSIONS))),
    };
    let cloud = CloudContext { aws: None, azure: azurite::emulator_options(), local_folders: false };
    let (_dir, home, now) = home(dest, cloud).await;

    for at in ["2020-01-25T06:20:00Z", "2020-01-25T07:20:00Z"] {
        let (response, requests) = hourly(&home, &now, &log, at).await;
        let deferred = response.deferred.unwrap_or_else(|| panic!("{at}: the run exported instead of probing: {:?}", response.hours));
        assert!(deferred.still_failing[0].contains(&container), "{deferred:?}");
        assert!(response.hours.is_empty());
        assert_eq!(part_writes(&requests), 0, "{at}: {requests:?}");
        assert!(!requests.is_empty() && requests.len() <= 8, "{at}: the probe alone, {} requests: {requests:?}", requests.len());
        eprintln!("Azure dead destination, hourly run at {at}: {} requests (the probe suite)", requests.len());
    }
    assert!(home.control.list_runs("dead").await.unwrap().is_empty());

    azurite::create_container_at(&azurite::http_url(), &container, None).await;
    let (response, requests) = hourly(&home, &now, &log, "2020-01-25T08:20:00Z").await;
    assert!(response.deferred.is_none(), "{:?}", response.deferred);
    assert!(response.hours.iter().all(|h| h.succeeded()) && response.hours.len() == 8, "{:?}", response.hours);
    assert!(part_writes(&requests) >= 1, "{requests:?}");
}
