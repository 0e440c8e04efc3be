//! The work the fault runs do: pipelines of cheap `sh` units whose result
//! can be computed independently, and whose every execution leaves a trace.
//!
//! A batch is one pipeline over `units` input files, each holding a number
//! `v`. Group `gen` (one unit per file) writes `f(v) = (7v + 3) mod
//! 1000003`; group `double` (one unit per committed `gen` unit) writes
//! twice its input; group `sum` (gather) adds them all up. A lost or
//! duplicated unit makes the sum wrong. Every output starts with the name
//! of the attempt that wrote it (the last component of TM_OUTPUT_DIR,
//! `<lease id>-<incarnation>`: a master restored from a copy of its data
//! dir reissues lease ids, so only both together name one attempt), and
//! every execution appends one line to the exec log:
//! `pipeline group unit attempt <lease id>-<incarnation> worker`.
//!
//! The wide pipeline ([`Wide`]) is one per run: a group writing thousands
//! of long-named outputs and a gather over them whose input list is over
//! what a lease carries inline, so the worker pages it with `ListInputs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rand::Rng;
use rand::rngs::StdRng;
use taskmaster_proto::compact::parse_attempt_dir_name;

/// The groups of every batch pipeline, in order.
pub const GROUPS: [&str; 3] = ["gen", "double", "sum"];

/// Attempts per unit: faults expire many attempts.
const RETRIES: u32 = 100;

const GEN: &str = r#"set -e
out=${TM_OUTPUT_DIR%/}
lease=${out##*/}
echo "$TM_PIPELINE $TM_GROUP $TM_UNIT $TM_ATTEMPT $lease $FAULT_WORKER" >> "$EXEC_LOG"
read v < "$TM_INPUTS"
# One unit in 64 outlasts a zombie pause: its worker finds the lease lost
# when it wakes, and cancels the running command.
if [ $((v % 64)) -eq 0 ]; then sleep 2.5; fi
echo "$lease $TM_INPUTS $(( (v * 7 + 3) % 1000003 ))" > "$TM_OUTPUT_DIR/value"
"#;

const DOUBLE: &str = r#"set -e
out=${TM_OUTPUT_DIR%/}
lease=${out##*/}
echo "$TM_PIPELINE $TM_GROUP $TM_UNIT $TM_ATTEMPT $lease $FAULT_WORKER" >> "$EXEC_LOG"
read up_lease up_input x < "$TM_INPUTS"
echo "$lease $TM_INPUTS $(( x * 2 ))" > "$TM_OUTPUT_DIR/value"
"#;

const SUM: &str = r#"set -e
out=${TM_OUTPUT_DIR%/}
lease=${out##*/}
echo "$TM_PIPELINE $TM_GROUP $TM_UNIT $TM_ATTEMPT $lease $FAULT_WORKER" >> "$EXEC_LOG"
n=0
total=0
while IFS= read -r f; do
  read l p x < "$f"
  n=$((n + 1))
  total=$((total + x))
done < "$TM_INPUTS_FILE"
echo "$lease $n $total" > "$TM_OUTPUT_DIR/value"
"#;

/// `gen`'s function of an input number.
pub fn gen_value(v: u64) -> u64 {
    (v * 7 + 3) % 1_000_003
}

/// The wide pipeline's name: how the checks tell it from the batches.
pub const WIDE_NAME: &str = "wide";

/// The live schedule of the long profile: a run every 2 s whose one unit
/// writes its logical time; each succeeded run publishes it.
pub const TICK_NAME: &str = "fault-tick";

/// A run of the tick schedule (its pipeline ids are `fault-tick-<time>`).
pub fn is_tick_run(pipeline_id: &str) -> bool {
    pipeline_id.starts_with("fault-tick-")
}

/// The wide pipeline's groups, in order.
pub const WIDE_GROUPS: [&str; 2] = ["many", "count"];

/// Each `many` unit writes `files` empty outputs named `<unit>-<245
/// digits>` (247 bytes, under the 255 a path component may have), so
/// `count`'s input list is about `units * files * 315` bytes of paths.
/// `count` writes `<attempt> <inputs> <distinct inputs>` to `value`.
const WIDE_MANY: &str = r#"set -e
cd "$TM_OUTPUT_DIR"
seq -f "$TM_UNIT-%0245.0f" 1 "$WIDE_FILES" | xargs touch
"#;

const WIDE_COUNT: &str = r#"set -e
out=${TM_OUTPUT_DIR%/}
lease=${out##*/}
n=$(wc -l < "$TM_INPUTS_FILE" | tr -d ' ')
distinct=$(sort -u "$TM_INPUTS_FILE" | wc -l | tr -d ' ')
echo "$lease $n $distinct" > "$TM_OUTPUT_DIR/value"
"#;

/// The wide pipeline: `units` units of `files` outputs each, and a gather.
#[derive(Debug, Clone)]
pub struct Wide {
    pub pipeline_file: PathBuf,
    pub units: u32,
    pub files: u32,
}

impl Wide {
    /// The inputs `count` must see, each once.
    pub fn inputs(&self) -> u64 {
        u64::from(self.units) * u64::from(self.files)
    }

    /// Units of every group (many, count).
    pub fn total_units(&self) -> u64 {
        u64::from(self.units) + 1
    }
}

/// One batch: a pipeline file over its own input files.
#[derive(Debug, Clone)]
pub struct Batch {
    pub number: u32,
    pub pipeline_file: PathBuf,
    /// `gen`'s expected value per input file (absolute path).
    pub gen_values: BTreeMap<String, u64>,
    /// What `sum` must write: twice the sum of `gen` values.
    pub expected_sum: u64,
}

impl Batch {
    /// Units of every group of this batch's pipeline (gen, double, sum).
    pub fn units(&self) -> u64 {
        2 * self.gen_values.len() as u64 + 1
    }
}

/// The scripts, the exec log and the batches made so far.
pub struct Workload {
    root: PathBuf,
    pub exec_log: PathBuf,
    units_per_batch: u32,
    pub batches: BTreeMap<u32, Batch>,
    pub wide: Option<Wide>,
}

impl Workload {
    /// Writes the scripts under `root`.
    /// Writes the tick schedule's file (`catchup = "all"`: every logical
    /// time from the first must run once, across every fault).
    pub fn tick_schedule_file(&self) -> PathBuf {
        std::fs::write(self.root.join("tick-seed.txt"), "tick").expect("tick seed");
        let path = self.root.join("tick.toml");
        let text = format!(
            "name = \"{TICK_NAME}\"\n\
             [schedule]\n\
             cron = \"*/2 * * * * *\"\n\
             catchup = \"all\"\n\
             overlap = \"allow\"\n\
             publish = [\"tick\"]\n\
             [[groups]]\n\
             name = \"tick\"\n\
             command = [\"sh\", \"-c\", \"echo \\\"$TM_PARAM_TS\\\" > \\\"$TM_OUTPUT_DIR/ts\\\"\"]\n\
             inputs = [\"tick-seed.txt\"]\n\
             max_attempts = 100\n"
        );
        std::fs::write(&path, text).expect("tick schedule");
        path
    }

    pub fn new(root: &Path, units_per_batch: u32) -> Workload {
        std::fs::create_dir_all(root).expect("workload dir");
        let root = root.canonicalize().expect("canonical workload dir");
        for (name, text) in [("gen.sh", GEN), ("double.sh", DOUBLE), ("sum.sh", SUM)] {
            std::fs::write(root.join(name), text).expect("script");
        }
        let exec_log = root.join("exec.log");
        std::fs::write(&exec_log, "").expect("exec log");
        Workload {
            root,
            exec_log,
            units_per_batch,
            batches: BTreeMap::new(),
            wide: None,
        }
    }

    /// Writes the wide pipeline (once; later calls return it again).
    pub fn wide(&mut self, units: u32, files: u32) -> Wide {
        if let Some(wide) = &self.wide {
            return wide.clone();
        }
        let dir = self.root.join("wide");
        std::fs::create_dir_all(dir.join("data")).expect("wide dir");
        for i in 0..units {
            std::fs::write(dir.join(format!("data/in-{i:03}.txt")), "x\n").expect("input file");
        }
        let script = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("script");
            format!("{:?}", path.display().to_string())
        };
        let (many, count) = (script("many.sh", WIDE_MANY), script("count.sh", WIDE_COUNT));
        let toml = format!(
            "name = \"{WIDE_NAME}\"\n\
             [[groups]]\nname = \"many\"\ncommand = [\"sh\", {many}]\n\
             inputs = [\"data/*.txt\"]\nunit_bytes = 0\nenv = {{ WIDE_FILES = \"{files}\" }}\n\
             max_attempts = {RETRIES}\nretry_delay = \"0\"\n\
             [[groups]]\nname = \"count\"\ncommand = [\"sh\", {count}]\n\
             after = [\"many\"]\ngather = true\n\
             max_attempts = {RETRIES}\nretry_delay = \"0\"\n"
        );
        let pipeline_file = dir.join("pipeline.toml");
        std::fs::write(&pipeline_file, toml).expect("pipeline file");
        let wide = Wide {
            pipeline_file,
            units,
            files,
        };
        self.wide = Some(wide.clone());
        wide
    }

    /// Writes the next batch (inputs from `rng`) and returns it.
    pub fn add_batch(&mut self, rng: &mut StdRng) -> Batch {
        let number = self.batches.len() as u32;
        let dir = self.root.join(format!("batch-{number}"));
        std::fs::create_dir_all(dir.join("data")).expect("batch dir");
        let mut gen_values = BTreeMap::new();
        for i in 0..self.units_per_batch {
            let v: u64 = rng.random_range(0..1_000_000);
            let path = dir.join(format!("data/in-{i:06}.txt"));
            std::fs::write(&path, format!("{v}\n")).expect("input file");
            gen_values.insert(path.display().to_string(), gen_value(v));
        }
        let expected_sum = 2 * gen_values.values().sum::<u64>();
        let pipeline_file = dir.join("pipeline.toml");
        std::fs::write(&pipeline_file, self.pipeline_toml(number)).expect("pipeline file");
        let batch = Batch {
            number,
            pipeline_file,
            gen_values,
            expected_sum,
        };
        self.batches.insert(number, batch.clone());
        batch
    }

    fn pipeline_toml(&self, number: u32) -> String {
        let script = |name: &str| format!("{:?}", self.root.join(name).display().to_string());
        let env = format!("{{ EXEC_LOG = {:?} }}", self.exec_log.display().to_string());
        let mut toml = format!("name = \"faults\"\n[params]\nbatch = \"{number}\"\n");
        let groups = [
            ("gen", "inputs = [\"data/*.txt\"]\nunit_bytes = 0"),
            ("double", "after = [\"gen\"]"),
            ("sum", "after = [\"double\"]\ngather = true"),
        ];
        for (name, wiring) in groups {
            let _ = write!(
                toml,
                "[[groups]]\nname = \"{name}\"\ncommand = [\"sh\", {}]\n{wiring}\n\
                 max_attempts = {RETRIES}\nretry_delay = \"0\"\nenv = {env}\n",
                script(&format!("{name}.sh"))
            );
        }
        toml
    }
}

/// One line of the exec log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub pipeline: String,
    pub group: String,
    pub unit: u32,
    pub attempt: u32,
    pub lease: u64,
    /// The incarnation of the master that granted the lease.
    pub incarnation: u64,
    pub worker: String,
}

/// Parses the exec log; lines that do not parse are returned apart.
pub fn read_exec_log(path: &Path) -> (Vec<Execution>, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut executions = Vec::new();
    let mut bad = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let parsed = (f.len() == 6)
            .then(|| {
                let (lease, incarnation) = parse_attempt_dir_name(f[4])?;
                Some(Execution {
                    pipeline: f[0].to_string(),
                    group: f[1].to_string(),
                    unit: f[2].parse().ok()?,
                    attempt: f[3].parse().ok()?,
                    lease,
                    incarnation,
                    worker: f[5].to_string(),
                })
            })
            .flatten();
        match parsed {
            Some(e) => executions.push(e),
            None => bad.push(line.to_string()),
        }
    }
    (executions, bad)
}
