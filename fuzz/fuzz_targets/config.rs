//! Config loader: any text gives a config or a list of errors, never a panic (secrets from
//! the environment are answered by a fixed function).
#![no_main]

use heatgrid::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |k: &str| (k.len() % 2 == 0).then(|| format!("secret-value-for-{k}"));
    match Config::parse(text, &env) {
        Ok(c) => assert!(!c.stations.is_empty()),
        Err(errors) => assert!(!errors.is_empty()),
    }
});
