//! Adapters: the only modules that know about a concrete storage, mailer or scheduler.

pub mod local;
pub mod memory;
pub mod azure;
pub mod azure_errors;
pub mod aws;
pub mod s3;
pub mod s3_errors;
pub mod s3_probe;
pub mod factory;
pub mod sdk_errors;
pub mod scheduler;
pub mod ses;
pub mod outbox;
pub mod local_scheduler;
pub mod lambda_invoker;
pub mod azure_probe;
pub mod function_env;
pub mod local_cipher;
pub mod kms_cipher;
pub mod embedded;
