//! invoice-sync: accounting CSV exports in, CM.com payment links and mail out.
//!
//! # Layout
//!
//! The modules read as the data flows:
//!
//! - [`config`]  typed settings from the TOML file; secrets wrapped, read lazily.
//! - [`domain`]  validated newtypes (money in integer minor units, references, addresses, codes).
//! - [`ingest`]  inbox scan, decoding, column mapping, row validation, rejection reports.
//! - [`store`]   SQLite: open (WAL, foreign keys, busy timeout), migrations from `schema/`,
//!   invoices with revisions, imports.
//! - [`lock`]    the exclusive run lock per database.
//! - [`mail`]    templates, MIME messages, SMTP / `.eml` transports; never the database.
//! - [`cli`]     clap definitions and the commands; maps outcomes to exit codes.

pub mod cli;
pub mod config;
pub mod domain;
pub mod ingest;
pub mod lock;
pub mod mail;
pub mod store;
