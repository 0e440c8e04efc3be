//! The work the fault runs do: pipelines of cheap `sh` units whose result
//! can be computed independently, and whose every execution leaves a trace.
//!
//! A batch is one pipeline over `units` input files, each holding a number
//! `v`. Group `gen` (one unit per file) writes `f(v) = (7v + 3) mod
//! 1000003`; group `double` (one unit per committed `gen` unit) writes
//! twice its input; group `sum` (gather) adds them all up. A lost or
//! duplicated unit makes the sum wrong. Every output starts with the lease
//! id of the attempt that wrote it (the last component of TM_OUTPUT_DIR,
//! `<lease id>-<incarnation>`, cut at the '-': one run has one lineage, so
//! lease ids alone are unique),
//! and every execution appends one line to the exec log:
//! `pipeline group unit attempt lease worker`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rand::Rng;
use rand::rngs::StdRng;

/// The groups of every batch pipeline, in order.
pub const GROUPS: [&str; 3] = ["gen", "double", "sum"];

/// Attempts per unit: faults expire many attempts.
const RETRIES: u32 = 100;

const GEN: &str = r#"set -e
out=${TM_OUTPUT_DIR%/}
lease=${out##*/}
lease=${lease%%-*}
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
lease=${lease%%-*}
echo "$TM_PIPELINE $TM_GROUP $TM_UNIT $TM_ATTEMPT $lease $FAULT_WORKER" >> "$EXEC_LOG"
read up_lease up_input x < "$TM_INPUTS"
echo "$lease $TM_INPUTS $(( x * 2 ))" > "$TM_OUTPUT_DIR/value"
"#;

const SUM: &str = r#"set -e
out=${TM_OUTPUT_DIR%/}
lease=${out##*/}
lease=${lease%%-*}
echo "$TM_PIPELINE $TM_GROUP $TM_UNIT $TM_ATTEMPT $lease $FAULT_WORKER" >> "$EXEC_LOG"
n=0
total=0
for f in $TM_INPUTS; do
  read l p x < "$f"
  n=$((n + 1))
  total=$((total + x))
done
echo "$lease $n $total" > "$TM_OUTPUT_DIR/value"
"#;

/// `gen`'s function of an input number.
pub fn gen_value(v: u64) -> u64 {
    (v * 7 + 3) % 1_000_003
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
}

impl Workload {
    /// Writes the scripts under `root`.
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
        }
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
                Some(Execution {
                    pipeline: f[0].to_string(),
                    group: f[1].to_string(),
                    unit: f[2].parse().ok()?,
                    attempt: f[3].parse().ok()?,
                    lease: f[4].parse().ok()?,
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
