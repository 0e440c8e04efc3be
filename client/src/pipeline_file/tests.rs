use std::fs;
use std::path::Path;

use super::*;

/// Writes `files` (relative path, contents) under a new temporary folder.
fn folder_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in files {
        let path = dir.path().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }
    dir
}

/// Every input file of a group's units, in unit order.
fn input_files(group: &GroupSpec) -> Vec<String> {
    group
        .input_units
        .iter()
        .flat_map(|u| u.files.clone())
        .collect()
}

fn load(dir: &Path, overrides: &[(&str, &str)]) -> Result<PipelineSpec, PipelineFileError> {
    let overrides: Vec<(String, String)> = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load_pipeline(&dir.join("pipeline.toml"), &overrides)
}

const VALID: &str = r#"
name = "example"
[params]
ds = "2026-11-21"
region = "eu"
[[groups]]
name = "extract"
command = ["python3", "extract.py"]
inputs = ["data/*.csv", "data/b.csv", "extra/*.csv"]
env = { LANG = "C" }
max_attempts = 3
[[groups]]
name = "aggregate"
task = "sum"
after = ["extract"]
"#;

#[test]
fn valid_file_expands_globs_sets_workdir_and_overrides_params() {
    let dir = folder_with(&[
        ("pipeline.toml", VALID),
        ("data/b.csv", "b"),
        ("data/a.csv", "a"),
        ("data/notes.txt", "not matched"),
        ("extra/c.csv", "c"),
    ]);
    // A directory matching the glob is not an input.
    fs::create_dir(dir.path().join("data/dir.csv")).unwrap();
    let spec = load(dir.path(), &[("ds", "2026-12-01"), ("new", "x=y")]).unwrap();

    let root = dir.path().canonicalize().unwrap();
    assert_eq!(spec.name, "example");
    assert_eq!(spec.params["ds"], "2026-12-01");
    assert_eq!(spec.params["region"], "eu");
    assert_eq!(spec.params["new"], "x=y");
    let extract = &spec.groups[0];
    assert_eq!(extract.task, "exec");
    assert_eq!(extract.command, ["python3", "extract.py"]);
    assert_eq!(extract.workdir, root.to_str().unwrap());
    let expected: Vec<String> = ["data/a.csv", "data/b.csv", "extra/c.csv"]
        .iter()
        .map(|p| root.join(p).to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        input_files(extract),
        expected,
        "absolute, sorted, de-duplicated"
    );
    assert_eq!(
        extract.input_units.len(),
        3,
        "without unit_bytes, fewer small files than 64 get a unit each (parallelism first)"
    );
    assert_eq!(extract.env["LANG"], "C");
    assert_eq!(extract.max_attempts, 3);
    let aggregate = &spec.groups[1];
    assert_eq!(aggregate.task, "sum");
    assert_eq!(aggregate.after, ["extract"]);
    assert!(aggregate.input_units.is_empty());
    assert_eq!(aggregate.max_attempts, 0, "absent retries: master default");
}

#[test]
fn absolute_and_parent_globs_give_normalized_absolute_paths() {
    let data = folder_with(&[("x.csv", "x")]);
    let data_root = data.path().canonicalize().unwrap();
    let pipeline = format!(
        "name = \"p\"\n[[groups]]\nname = \"g\"\ncommand = [\"true\"]\ninputs = [\"{}/*.csv\", \"../{}/x.csv\"]\n",
        data_root.display(),
        data_root.file_name().unwrap().to_str().unwrap(),
    );
    let sibling = tempfile::tempdir_in(data_root.parent().unwrap()).unwrap();
    fs::write(sibling.path().join("pipeline.toml"), pipeline).unwrap();
    let spec = load(sibling.path(), &[]).unwrap();
    assert_eq!(
        input_files(&spec.groups[0]),
        [data_root.join("x.csv").to_string_lossy().into_owned()]
    );
}

#[test]
fn unquoted_date_and_numbers_become_text_params() {
    let dir = folder_with(&[(
        "pipeline.toml",
        "name = \"p\"\n[params]\nds = 2026-11-21\nn = 4\n",
    )]);
    let spec = load(dir.path(), &[]).unwrap();
    assert_eq!(spec.params["ds"], "2026-11-21");
    assert_eq!(spec.params["n"], "4");
}

/// The async loader gives what the sync one gives, and its refusals, on a
/// single-threaded runtime too.
#[tokio::test(flavor = "current_thread")]
async fn the_async_loader_reads_the_same_spec_off_the_runtime() {
    let dir = folder_with(&[
        ("pipeline.toml", VALID),
        ("data/a.csv", "a"),
        ("data/b.csv", "b"),
        ("extra/c.csv", "c"),
    ]);
    let path = dir.path().join("pipeline.toml");
    let overrides = vec![("ds".to_string(), "2026-12-01".to_string())];
    let spec = load_pipeline_async(path.clone(), overrides.clone())
        .await
        .unwrap();
    assert_eq!(spec, load_pipeline(&path, &overrides).unwrap());
    assert_eq!(spec.params["ds"], "2026-12-01");

    let err = load_pipeline_async(dir.path().join("missing.toml"), Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(err, PipelineFileError::Read { .. }), "{err:?}");
    let err = load_schedule_async(path, Vec::new()).await.unwrap_err();
    assert!(err.to_string().contains("no [schedule] table"), "{err}");
}

#[test]
fn malformed_toml_reports_path_line_and_column() {
    let dir = folder_with(&[(
        "pipeline.toml",
        "name = \"p\"\n[[groups]]\nname = = \"x\"\n",
    )]);
    let err = load(dir.path(), &[]).unwrap_err();
    assert!(matches!(err, PipelineFileError::Parse { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("pipeline.toml"), "{message}");
    assert!(message.contains("line 3, column"), "{message}");
}

#[test]
fn unknown_field_is_rejected_with_its_name_and_position() {
    let dir = folder_with(&[(
        "pipeline.toml",
        "name = \"p\"\n[[groups]]\nname = \"g\"\ncomand = [\"true\"]\n",
    )]);
    let message = load(dir.path(), &[]).unwrap_err().to_string();
    assert!(message.contains("unknown field `comand`"), "{message}");
    assert!(message.contains("line 4, column 1"), "{message}");
}

#[test]
fn glob_matching_nothing_is_rejected_naming_the_glob() {
    let dir = folder_with(&[(
        "pipeline.toml",
        "name = \"p\"\n[[groups]]\nname = \"g\"\ncommand = [\"true\"]\ninputs = [\"nothing/*.csv\"]\n",
    )]);
    let err = load(dir.path(), &[]).unwrap_err();
    assert!(matches!(err, PipelineFileError::NoMatch { .. }), "{err:?}");
    assert!(err.to_string().contains("`nothing/*.csv`"), "{err}");
}

#[test]
fn invalid_glob_pattern_is_rejected() {
    let dir = folder_with(&[(
        "pipeline.toml",
        "name = \"p\"\n[[groups]]\nname = \"g\"\ncommand = [\"true\"]\ninputs = [\"data/***.csv\"]\n",
    )]);
    let err = load(dir.path(), &[]).unwrap_err();
    assert!(matches!(err, PipelineFileError::BadGlob { .. }), "{err:?}");
}

#[test]
fn exec_without_command_and_zero_retries_are_rejected() {
    let dir = folder_with(&[("pipeline.toml", "name = \"p\"\n[[groups]]\nname = \"g\"\n")]);
    let message = load(dir.path(), &[]).unwrap_err().to_string();
    assert!(message.contains("non-empty `command`"), "{message}");

    let dir = folder_with(&[(
        "pipeline.toml",
        "name = \"p\"\n[[groups]]\nname = \"g\"\ncommand = [\"true\"]\nmax_attempts = 0\n",
    )]);
    let message = load(dir.path(), &[]).unwrap_err().to_string();
    assert!(message.contains("at least 1"), "{message}");
}

/// `retries` meant attempts here and retries after the first attempt in
/// Airflow, Celery and Temporal: it is refused with the key to write
/// instead, never read with either meaning.
#[test]
fn retries_is_refused_with_the_key_that_says_what_it_means() {
    let dir = folder_with(&[(
        "pipeline.toml",
        "name = \"p\"\n[[groups]]\nname = \"g\"\ncommand = [\"true\"]\nretries = 3\n",
    )]);
    let message = load(dir.path(), &[]).unwrap_err().to_string();
    assert!(
        message.contains("`retries = 3` is not accepted") && message.contains("`max_attempts = 3`"),
        "{message}"
    );
}

#[test]
fn missing_file_is_a_read_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(dir.path(), &[]).unwrap_err();
    assert!(matches!(err, PipelineFileError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("pipeline.toml"), "{err}");
}

#[test]
fn param_syntax() {
    assert_eq!(
        parse_param("ds=2026").unwrap(),
        ("ds".into(), "2026".into())
    );
    assert_eq!(parse_param("q=a=b").unwrap(), ("q".into(), "a=b".into()));
    assert_eq!(
        parse_param("empty=").unwrap(),
        ("empty".into(), String::new())
    );
    for bad in ["novalue", "=x", "", " =x"] {
        let err = parse_param(bad).unwrap_err();
        assert!(matches!(err, PipelineFileError::BadParam { .. }), "{bad}");
    }
}

#[test]
fn empty_override_key_is_rejected() {
    let dir = folder_with(&[("pipeline.toml", "name = \"p\"\n")]);
    let err = load(dir.path(), &[("", "x")]).unwrap_err();
    assert!(matches!(err, PipelineFileError::BadParam { .. }), "{err:?}");
}

#[test]
fn units_are_sized_by_unit_bytes_and_shuffle_keys_pass_through() {
    let dir = folder_with(&[
        (
            "pipeline.toml",
            "name = \"p\"\n[[groups]]\nname = \"g\"\ntask = \"split\"\ninputs = [\"*.txt\"]\nunit_bytes = 4\n\
             [[groups]]\nname = \"r\"\ntask = \"sum.reduce\"\nafter = [\"g\"]\npartitions = 3\nconfig = { sort_by = \"value\" }\n",
        ),
        ("a.txt", "12"),
        ("b.txt", "34"),
        ("c.txt", "0123456789"),
    ]);
    let spec = load(dir.path(), &[]).unwrap();
    let units = &spec.groups[0].input_units;
    assert_eq!(units[0].files.len(), 2, "a and b packed up to 4 bytes");
    let slices: Vec<(u64, u64)> = units[1..]
        .iter()
        .map(|u| (u.slices[0].start, u.slices[0].end))
        .collect();
    assert_eq!(slices, vec![(0, 3), (3, 6), (6, 10)]);
    assert_eq!(spec.groups[1].partitions, 3);
    assert_eq!(spec.groups[1].config["sort_by"], "value");
}

#[test]
fn retry_delay_and_max_in_flight_reach_the_group_spec() {
    let dir = folder_with(&[(
        "pipeline.toml",
        "name = \"p\"\n\
         [[groups]]\nname = \"slow\"\ncommand = [\"true\"]\nretry_delay = \"90s\"\nmax_in_flight = 4\n\
         [[groups]]\nname = \"now\"\ncommand = [\"true\"]\nretry_delay = \"0\"\n\
         [[groups]]\nname = \"zero\"\ncommand = [\"true\"]\nretry_delay = 0\n\
         [[groups]]\nname = \"default\"\ncommand = [\"true\"]\n",
    )]);
    let spec = load(dir.path(), &[]).unwrap();
    let delays: Vec<Option<u64>> = spec.groups.iter().map(|g| g.retry_delay_ms).collect();
    assert_eq!(delays, vec![Some(90_000), Some(0), Some(0), None]);
    let limits: Vec<u32> = spec.groups.iter().map(|g| g.max_in_flight).collect();
    assert_eq!(limits, vec![4, 0, 0, 0], "absent: no limit");
}

#[test]
fn timeout_reaches_the_group_spec_and_bad_ones_are_named() {
    let dir = folder_with(&[(
        "pipeline.toml",
        "name = \"p\"\n\
         [[groups]]\nname = \"capped\"\ncommand = [\"true\"]\ntimeout = \"30m\"\n\
         [[groups]]\nname = \"free\"\ncommand = [\"true\"]\n",
    )]);
    let spec = load(dir.path(), &[]).unwrap();
    let timeouts: Vec<Option<u64>> = spec.groups.iter().map(|g| g.timeout_ms).collect();
    assert_eq!(timeouts, vec![Some(1_800_000), None]);

    for bad in ["\"30\"", "\"half an hour\"", "1800", "true"] {
        let dir = folder_with(&[(
            "pipeline.toml",
            &format!(
                "name = \"p\"\n[[groups]]\nname = \"g\"\ncommand = [\"true\"]\ntimeout = {bad}\n"
            ),
        )]);
        let message = load(dir.path(), &[]).unwrap_err().to_string();
        assert!(
            message.contains("group `g`") && message.contains("`timeout`"),
            "{bad}: {message}"
        );
    }
}

#[test]
fn bad_retry_delay_is_rejected_naming_the_group_and_syntax() {
    for bad in [
        "\"90\"",
        "\"2 minutes\"",
        "\"-1s\"",
        "\"1.5s\"",
        "90",
        "true",
    ] {
        let dir = folder_with(&[(
            "pipeline.toml",
            &format!(
                "name = \"p\"\n[[groups]]\nname = \"g\"\ncommand = [\"true\"]\nretry_delay = {bad}\n"
            ),
        )]);
        let err = load(dir.path(), &[]).unwrap_err();
        assert!(
            matches!(err, PipelineFileError::Invalid { .. }),
            "{bad}: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("group `g`")
                && message.contains("retry_delay")
                && message.contains("90s"),
            "{bad}: {message}"
        );
    }
}

#[test]
fn duration_syntax() {
    let cases = [
        ("0", 0),
        ("500ms", 500),
        ("0ms", 0),
        ("90s", 90_000),
        ("2m", 120_000),
        ("1h", 3_600_000),
        (" 3s ", 3_000),
    ];
    for (text, ms) in cases {
        assert_eq!(parse_duration_ms(text), Ok(ms), "{text}");
    }
    for bad in [
        "",
        "90",
        "s",
        "5x",
        "5 s",
        "-5s",
        "1.5s",
        "99999999999999999999h",
        "1d",
    ] {
        let err = parse_duration_ms(bad).unwrap_err();
        assert_eq!(err.text, bad);
        assert!(
            err.to_string().contains("e.g. `500ms`, `90s`, `2m`"),
            "{err}"
        );
    }
}
