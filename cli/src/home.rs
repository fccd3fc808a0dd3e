//! The embedded home, optionally with cloud destinations enabled.

use std::path::Path;
use std::sync::Arc;

use exporter::adapters::embedded::EmbeddedHome;
use exporter::adapters::factory::CloudContext;
use exporter::export::ExportSettings;
use exporter::failure::system_clock;
use exporter::retry::RetryPolicy;

pub struct Home {
    pub embedded: EmbeddedHome,
    pub cloud: CloudContext,
}

pub async fn open(dir: &Path, cloud: bool) -> exporter::Result<Home> {
    let mut embedded = EmbeddedHome::open(dir, ExportSettings::standard()?, RetryPolicy::default(), system_clock())?;
    let cloud = if cloud { CloudContext::from_env().await? } else { CloudContext::local_only() };
    if cloud.aws.is_some() {
        // Destinations in S3/Azure: exports and probes go through the cloud context.
        embedded.runs.cloud = cloud.clone();
        let runner = Arc::new(embedded.runs.clone());
        embedded.services.runner = runner.clone();
        embedded.services.scheduled = runner.clone();
        embedded.services.failure.prober = Arc::new(exporter::adapters::function_env::FactoryProber::new(cloud.clone()));
        embedded.backfill.runner = runner;
        embedded.backfill.failure = embedded.services.failure.clone();
    }
    Ok(Home { embedded, cloud })
}
