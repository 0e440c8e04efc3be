#![no_main]
//! See `taskmaster_tests::fuzzing::pipeline_toml`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    taskmaster_tests::fuzzing::pipeline_toml(data);
});
