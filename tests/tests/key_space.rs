//! One owner per key space on the real emulators: the control store on S3 (moto) or Azure
//! (Azurite), destinations there, connections created through the whole create path (probes
//! included). A second connection on the same keys is refused at create, in any spelling,
//! naming the connection and the prefix; another project of the organisation in the same
//! prefix is accepted; a stored twin fails its runs with an error retrying cannot cure.

use std::sync::Arc;

use exporter::adapters::local::cipher::LocalCipher;
use exporter::adapters::local::scheduler::LocalScheduler;
use exporter::control::connection::{Connection, DataKinds, ProjectKind};
use exporter::control::key_space;
use exporter::control::lifecycle::create_connection;
use exporter::control::projects::Project;
use exporter::control::store::ControlStore;
use exporter::model::destination::Destination;
use exporter::model::format::PartFormat;
use exporter::ports::ObjectStore;
use exporter::runtime::factory::{open_store, CloudContext};
use exporter::runtime::function_env::FactoryProber;
use integration_tests::azurite;
use integration_tests::emulators::{moto_url, unique_name};
use integration_tests::moto::{self, admin_config, create_bucket, ROLE_TEMPLATE};

fn connection(id: &str, project: &str, destination: Destination, created: &str) -> Connection {
    Connection {
        id: id.into(),
        org_id: "42".into(),
        project_id: project.into(),
        project_kind: ProjectKind::Standard,
        export: DataKinds { events: true, merged_ids: true },
        filter: None,
        destination,
        merged_ids_destination: None,
        admins: vec!["admin@example.com".into()],
        creator: "owner@example.com".into(),
        complete_markers: true,
        timestamp_format: Default::default(),
        format: Default::default(),
        layout: Default::default(),
        table: Default::default(),
        webhook: None,
        failure_webhook: None,
        fields: None,
        enabled: true,
        created: Some(created.into()),
        owes_from: None,
    }
}

/// The key-space rule through `create_connection` on a control store in `control_store`, for
/// a destination `dest` and the same place spelled otherwise (`respelled`, prefix kept).
async fn refuses_a_second_writer_of_the_same_keys(control_store: Arc<dyn ObjectStore>, ctx: CloudContext, dest: Destination, respelled: Destination) {
    let keys = tempfile::tempdir().unwrap();
    let cipher = Arc::new(LocalCipher::open_or_create(keys.path().join("secret.key")).unwrap());
    let control = ControlStore::new(control_store, cipher);
    let schedules = LocalScheduler::new(keys.path().join("schedules")).unwrap();
    let prober = FactoryProber::new(ctx);
    for project in ["187520", "187521"] {
        control.add_project(&Project::new(project, "42", false).unwrap()).await.unwrap();
    }
    let now = chrono::Utc::now();
    let (first, reports) = create_connection(&control, &schedules, &prober, connection("ks-json", "187520", dest.clone(), "2020-01-25T00:05:00Z"), now)
        .await
        .expect("the first connection passes its probes and is created");
    assert!(reports.iter().all(|r| r.all_passed()));

    for (what, destination) in [("same spelling", dest.clone()), ("another spelling", respelled)] {
        let mut twin = connection("ks-parquet", "187520", destination, "2020-01-26T00:05:00Z");
        twin.format = PartFormat::Parquet;
        let err = create_connection(&control, &schedules, &prober, twin, now).await.expect_err(what);
        let text = err.to_string();
        assert!(!err.is_retryable(), "{what}: {text}");
        assert!(text.contains("destination.prefix") && text.contains("connection ks-json") && text.contains("connections delete ks-json"), "{what}: {text}");
    }
    assert_eq!(control.list_connections().await.unwrap().len(), 1, "nothing was stored");

    // The seed's case: another project of the organisation in the same bucket and prefix.
    let (app, _) = create_connection(&control, &schedules, &prober, connection("ks-app", "187521", dest.clone(), "2020-01-26T00:05:00Z"), now)
        .await
        .expect("another project of the organisation may share the prefix");
    assert_eq!(key_space::plan_run(&control, &app).await.unwrap().merged_ids_owner.as_deref(), Some("ks-json"), "one writer of the merged IDs");
    assert_eq!(key_space::plan_run(&control, &first).await.unwrap().merged_ids_owner, None);

    // A stored twin (made before the rule): its runs fail, not retryable; the first keeps working.
    let mut stored_twin = connection("ks-stored", "187520", dest, "2020-01-27T00:05:00Z");
    stored_twin.format = PartFormat::Parquet;
    control.save_connection(&stored_twin).await.unwrap();
    let err = key_space::plan_run(&control, &stored_twin).await.unwrap_err();
    assert!(!err.is_retryable() && err.to_string().contains("connection ks-json"), "{err}");
    assert!(key_space::plan_run(&control, &first).await.is_ok());
    for c in control.list_connections().await.unwrap() {
        control.delete_connection(&c.id).await.unwrap();
    }
}

#[tokio::test]
async fn s3_on_moto_refuses_a_second_writer_of_the_same_keys() {
    let url = moto_url();
    let cfg = admin_config(&url);
    let control_bucket = unique_name("ks-control");
    let bucket = unique_name("ks-dest");
    create_bucket(&cfg, &control_bucket).await;
    create_bucket(&cfg, &bucket).await;
    let aws = exporter::adapters::aws::context::AwsContext::new(cfg, Some(ROLE_TEMPLATE.into())).unwrap();
    let ctx = CloudContext { aws: Some(aws), ..Default::default() };
    let control_store = open_store(&Destination::aws_s3(&control_bucket, "", moto::REGION, None), "187520", &ctx).await.unwrap();
    let dest = Destination::aws_s3(&bucket, "exports", moto::REGION, None);
    let respelled = Destination::aws_s3(&bucket, "exports/", moto::REGION, None);
    refuses_a_second_writer_of_the_same_keys(control_store, ctx, dest, respelled).await;
}

#[tokio::test]
async fn azure_on_azurite_refuses_a_second_writer_of_the_same_keys() {
    let oauth = azurite::oauth();
    let control_container = oauth.new_container("ks-control").await;
    let container = oauth.new_container("ks-dest").await;
    let control_store: Arc<dyn ObjectStore> = Arc::new(oauth.store(&control_container));
    let dest = |account_url: String| Destination::Azure {
        account_url,
        container: container.clone(),
        prefix: "exports".into(),
        tenant_id: Some(oauth.tenant_id.clone()),
        client_id: Some(oauth.client_id.clone()),
        client_secret: Some(oauth.client_secret.clone()),
        sas_token: None,
    };
    let respelled = dest(format!("{}/", oauth.account_url.to_uppercase().replacen("HTTP", "http", 1)));
    let ctx = CloudContext { aws: None, azure: oauth.options(), local_folders: false };
    refuses_a_second_writer_of_the_same_keys(control_store, ctx, dest(oauth.account_url.clone()), respelled).await;
}
