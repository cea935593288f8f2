//! The configuration file (JSON): parsing and validation, and a valid configuration
//! survives its own save format.
#![no_main]

use brume::config::Config;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("brume.json");
    if let Ok(c) = Config::parse(path, data) {
        let json = serde_json::to_vec_pretty(&c).expect("a configuration serialises");
        let again = Config::parse(path, &json).expect("a saved configuration loads");
        assert_eq!(
            serde_json::to_vec_pretty(&again).expect("serialises"),
            json,
            "a configuration changed through save and load"
        );
    }
});
