//! Amazon Web Services: S3 destinations and the lake (`s3`), their access probe (`probe`),
//! error classification (`errors` for S3, `service_errors` for the control-plane services),
//! CloudWatch metrics as Embedded Metric Format log lines (`emf`), KMS sealing and key alias resolution (`kms_keys`), project roles (`iam`), SES mail, EventBridge Scheduler, Lambda invocation, and the shared SDK
//! configuration and role assumption (`context`); S3-compatible stores (R2, MinIO, GCS, ...) reached with
//! their own endpoint and access key, and which endpoints are admitted (`compatible`).

pub mod compatible;
pub mod context;
pub mod emf;
pub mod errors;
pub mod eventbridge;
pub mod iam;
pub mod kms;
pub mod kms_keys;
pub mod lambda;
pub mod probe;
pub mod s3;
pub mod scheduler;
pub mod service_errors;
pub mod ses;
