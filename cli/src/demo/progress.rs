//! Live progress of the demo's stages, as text for stderr: on a terminal
//! one bar per stage, redrawn in place; otherwise a plain line per stage,
//! printed only when its counts change (so logs stay short).

use std::fmt::Write as _;
use std::time::Duration;

use crate::view::{GroupView, PipelineView};

/// Characters in a progress bar.
pub const BAR_WIDTH: usize = 30;

/// Turns each polled status into the text to write to stderr.
#[derive(Debug)]
pub struct Progress {
    /// Draw bars redrawn in place (a terminal) instead of plain lines.
    terminal: bool,
    /// Lines drawn last time on a terminal, to move the cursor back over.
    drawn: usize,
    /// The counts last printed per stage in plain mode.
    printed: Vec<(String, (u64, u64, u64))>,
}

impl Progress {
    /// `terminal`: stderr is a terminal that understands ANSI cursor moves.
    pub fn new(terminal: bool) -> Progress {
        Progress {
            terminal,
            drawn: 0,
            printed: Vec::new(),
        }
    }

    /// The text to write for `pipeline`, `elapsed` after it was submitted
    /// (possibly empty).
    pub fn update(&mut self, pipeline: &PipelineView, elapsed: Duration) -> String {
        if self.terminal {
            self.redraw(pipeline, elapsed)
        } else {
            self.changed_lines(pipeline, elapsed)
        }
    }

    /// A header and one bar per stage, over the ones drawn before.
    fn redraw(&mut self, pipeline: &PipelineView, elapsed: Duration) -> String {
        let mut out = String::new();
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", self.drawn);
        }
        let width = name_width(pipeline);
        let header = format!(
            "pipeline {}  {}  {:.1}s",
            pipeline.id,
            pipeline.state,
            elapsed.as_secs_f64()
        );
        let lines =
            std::iter::once(header).chain(pipeline.groups.iter().map(|g| bar_line(g, width)));
        self.drawn = 0;
        for line in lines {
            // Clear the old line first: the new one may be shorter.
            let _ = writeln!(out, "\r\x1b[2K{line}");
            self.drawn += 1;
        }
        out
    }

    /// A line for each stage whose counts changed since last printed.
    fn changed_lines(&mut self, pipeline: &PipelineView, elapsed: Duration) -> String {
        let width = name_width(pipeline);
        let mut out = String::new();
        for group in &pipeline.groups {
            let counts = (group.committed, group.total, group.failed);
            let seen = self
                .printed
                .iter_mut()
                .find(|(name, _)| *name == group.name);
            match seen {
                Some((_, last)) if *last == counts => continue,
                Some((_, last)) => *last = counts,
                None => self.printed.push((group.name.clone(), counts)),
            }
            let _ = writeln!(
                out,
                "[{:>6.1}s] {:<width$}  {}",
                elapsed.as_secs_f64(),
                group.name,
                counts_text(group)
            );
        }
        out
    }
}

/// `split   [##########..........]  2/4  (1 running)`.
pub fn bar_line(group: &GroupView, name_width: usize) -> String {
    let filled = match group.total {
        0 => 0,
        total => (group.committed.min(total) as usize * BAR_WIDTH) / total as usize,
    };
    format!(
        "{:<name_width$}  [{}{}]  {}",
        group.name,
        "#".repeat(filled),
        ".".repeat(BAR_WIDTH - filled),
        counts_text(group)
    )
}

/// `2/4`, with what else is going on: units running, failed, or a stage
/// still waiting for its upstream stages.
fn counts_text(group: &GroupView) -> String {
    let mut text = format!("{}/{}", group.committed, group.total);
    if group.total == 0 && !group.complete {
        text.push_str("  waiting");
    }
    if group.leased > 0 {
        let _ = write!(text, "  ({} running)", group.leased);
    }
    if group.failed > 0 {
        let _ = write!(text, "  ({} failed)", group.failed);
    }
    text
}

fn name_width(pipeline: &PipelineView) -> usize {
    pipeline
        .groups
        .iter()
        .map(|g| g.name.chars().count())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, committed: u64, leased: u64, total: u64) -> GroupView {
        GroupView {
            name: name.into(),
            config_version: 1,
            complete: total > 0 && committed == total,
            pending: total - committed - leased,
            leased,
            committed,
            failed: 0,
            total,
        }
    }

    fn pipeline(groups: Vec<GroupView>) -> PipelineView {
        PipelineView {
            id: "p-1".into(),
            name: "wordcount-demo".into(),
            state: "running",
            params: Default::default(),
            groups,
            failed_units: Vec::new(),
            retries: 0,
        }
    }

    #[test]
    fn a_bar_fills_with_committed_units() {
        let line = bar_line(&group("map", 3, 1, 4), 6);
        let expected = format!(
            "map     [{}{}]  3/4  (1 running)",
            "#".repeat(22),
            ".".repeat(8)
        );
        assert_eq!(line, expected);
        assert!(bar_line(&group("merge", 0, 0, 0), 5).ends_with("0/0  waiting"));
    }

    #[test]
    fn plain_lines_only_for_stages_that_changed() {
        let mut progress = Progress::new(false);
        let second = Duration::from_secs(1);
        let first = progress.update(
            &pipeline(vec![group("split", 0, 1, 2), group("map", 0, 0, 0)]),
            second,
        );
        assert_eq!(
            first,
            "[   1.0s] split  0/2  (1 running)\n[   1.0s] map    0/0  waiting\n"
        );
        let again = progress.update(
            &pipeline(vec![group("split", 0, 2, 2), group("map", 0, 0, 0)]),
            second,
        );
        assert_eq!(again, "");
        let later = progress.update(
            &pipeline(vec![group("split", 1, 1, 2), group("map", 0, 0, 1)]),
            second,
        );
        assert_eq!(later.lines().count(), 2);
    }

    #[test]
    fn a_terminal_redraw_moves_back_over_the_last_drawing() {
        let mut progress = Progress::new(true);
        let view = pipeline(vec![group("split", 0, 1, 2)]);
        let first = progress.update(&view, Duration::ZERO);
        assert!(!first.contains("\x1b[2A"));
        assert_eq!(first.lines().count(), 2);
        let second = progress.update(&view, Duration::ZERO);
        assert!(second.starts_with("\x1b[2A"), "{second:?}");
    }
}
