//! The tracker script served at `tracker.path`.
