//! Host tests for the device-tree parser (filled in by tests below).
