#![no_main]
//! See `taskmaster_tests::fuzzing::spec_validate`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    taskmaster_tests::fuzzing::spec_validate(data);
});
