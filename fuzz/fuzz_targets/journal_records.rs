#![no_main]
//! See `taskmaster_tests::fuzzing::journal_records`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    taskmaster_tests::fuzzing::journal_records(data);
});
