//! Inbox scan, decoding, column mapping, row validation, rejection reports.
