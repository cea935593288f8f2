//! The parts of `brume` that are reachable from other crates (the fuzz targets in
//! `tests/fuzz`): the configuration's parsing and validation, and the webhook client
//! whose URL check the validation uses. The binary (`main.rs`) uses them from here.

pub mod config;
pub mod webhook;
