#![no_main]
//! See `taskmaster_tests::fuzzing::auth_metadata`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    taskmaster_tests::fuzzing::auth_metadata(data);
});
