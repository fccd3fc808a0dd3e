//! Adapters: the only modules that know about a concrete storage, mailer or scheduler.

pub mod aws;
pub mod azure;
pub mod azure_errors;
pub mod azure_probe;
pub mod embedded;
pub mod factory;
pub mod function_env;
pub mod kms_cipher;
pub mod lambda_invoker;
pub mod local;
pub mod local_cipher;
pub mod local_scheduler;
pub mod memory;
pub mod outbox;
pub mod s3;
pub mod s3_errors;
pub mod s3_probe;
pub mod scheduler;
pub mod sdk_errors;
pub mod ses;
