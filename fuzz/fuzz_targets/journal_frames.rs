#![no_main]
//! See `taskmaster_tests::fuzzing::journal_frames`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    taskmaster_tests::fuzzing::journal_frames(data);
});
