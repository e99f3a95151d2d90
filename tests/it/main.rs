//! The integration tests, one binary: each module tests one capability by driving the real
//! `invoice-sync` binary (or the library's clients) against the CM sandbox, a real SQLite
//! file and a real SMTP server on loopback. One binary links axum, reqwest and lettre once,
//! where a binary per file linked them 27 times. Shared helpers live in [`common`].

mod common;

mod artifact;
mod bank;
mod bank_formats;
mod check;
mod cm_apis;
mod cm_client;
mod cm_faults;
mod daemon;
mod demo;
mod idealqr_client;
mod idealqr_cycle;
mod idealqr_sandbox;
mod ingest;
mod ingest_safety;
mod links;
mod mail_outbox;
mod mail_render;
mod mail_smtp;
mod metrics;
mod payments;
mod permissions;
mod provisional_expiry;
mod reconciliation;
mod reminders;
mod sandbox;
mod sandbox_command;
mod scale;
mod secrets;
mod status_table;
mod systemd;
