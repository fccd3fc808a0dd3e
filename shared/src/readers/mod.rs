//! How the customer's readers see an export: the table definitions (DDL) each engine needs
//! to load a connection's files as they are. Reads the connection and the export's column
//! table; writes nothing.

pub mod ddl;
