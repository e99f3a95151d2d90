//! The exclusive run lock per database.
