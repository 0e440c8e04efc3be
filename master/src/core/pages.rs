//! Paged lists: every list a client can ask for comes a page at a time, so
//! no reply grows past the message limit however many pipelines, units or
//! files the master holds. A page holds at most what the caller asked for
//! (capped), about [`PAGE_BYTES_MAX`] bytes, and at least one entry when
//! any is left; its token says where the next page starts.

use prost::Message as _;
use taskmaster_proto::v1::{PipelineStatus, UnitOutputs, WorkerInfo};

use super::limits::{OUTPUT_PATHS_PAGE_MAX, PAGE_BYTES_MAX, PIPELINES_PAGE_MAX, WORKERS_PAGE_MAX};
use super::model::{Pos, UnitState};
use super::names::shown;
use super::{Core, CoreError};

impl Core {
    /// One page of pipelines in submission order, after the one that
    /// `page_token` names (empty: from the first), and the next page's
    /// token (empty after the last).
    pub fn list_page(
        &self,
        page_token: &str,
        page_size: u32,
    ) -> Result<(Vec<PipelineStatus>, String), CoreError> {
        let start = if page_token.is_empty() {
            0
        } else {
            let &after = self.pipeline_index.get(page_token).ok_or_else(|| {
                CoreError::Invalid(format!(
                    "page token {} names no pipeline (deleted since the last page?): \
                     list again from the start",
                    shown(page_token)
                ))
            })?;
            after as usize + 1
        };
        let most = page_limit(page_size, PIPELINES_PAGE_MAX);
        let mut page: Vec<PipelineStatus> = Vec::new();
        let mut bytes = 0;
        for pipeline in start.min(self.pipelines.len())..self.pipelines.len() {
            let status = self.pipeline_status(pipeline as u32);
            let size = status.encoded_len();
            if let Some(last) = page.last()
                && (page.len() == most || bytes + size > PAGE_BYTES_MAX)
            {
                let next = last.pipeline_id.clone();
                return Ok((page, next));
            }
            bytes += size;
            page.push(status);
        }
        Ok((page, String::new()))
    }

    /// One page of a group's committed outputs from `page_token` (empty:
    /// the first unit; else `<unit>.<file>` where the last page stopped),
    /// and the next page's token (empty after the last). `page_size`
    /// counts paths; a unit's paths may go on in the next page.
    pub fn outputs_page(
        &self,
        pipeline_id: &str,
        group: &str,
        page_token: &str,
        page_size: u32,
    ) -> Result<(Vec<UnitOutputs>, String), CoreError> {
        let &pipeline = self
            .pipeline_index
            .get(pipeline_id)
            .ok_or_else(|| CoreError::NotFound(format!("no pipeline {}", shown(pipeline_id))))?;
        let p = &self.pipelines[pipeline as usize];
        let &g = p.group_index.get(group).ok_or_else(|| {
            CoreError::NotFound(format!(
                "pipeline {pipeline_id} has no group {}",
                shown(group)
            ))
        })?;
        let (mut unit, mut file) = parse_outputs_token(page_token)?;
        let most = page_limit(page_size, OUTPUT_PATHS_PAGE_MAX);
        let units = &p.groups[g as usize].units;
        let mut out: Vec<UnitOutputs> = Vec::new();
        let (mut taken, mut bytes) = (0, 0);
        while (unit as usize) < units.len() {
            if let UnitState::Committed { lease_id, .. } = units[unit as usize].state {
                let pos = Pos {
                    pipeline,
                    group: g,
                    unit,
                };
                let mut entry = UnitOutputs {
                    unit,
                    lease_id,
                    incarnation: self.incarnations.of(lease_id),
                    paths: Vec::new(),
                };
                for path in self
                    .committed_paths(pos, None)
                    .into_iter()
                    .skip(file as usize)
                {
                    if taken > 0 && (taken == most || bytes + path.len() > PAGE_BYTES_MAX) {
                        if !entry.paths.is_empty() {
                            out.push(entry);
                        }
                        return Ok((out, format!("{unit}.{file}")));
                    }
                    taken += 1;
                    bytes += path.len();
                    file += 1;
                    entry.paths.push(path);
                }
                out.push(entry);
            }
            unit += 1;
            file = 0;
        }
        Ok((out, String::new()))
    }
}

impl Core {
    /// One page of live workers by id, after `page_token` (a worker id;
    /// empty: from the first), and the next page's token.
    pub fn workers_page(
        &self,
        now_ms: u64,
        page_token: &str,
        page_size: u32,
    ) -> (Vec<WorkerInfo>, String) {
        let most = page_limit(page_size, WORKERS_PAGE_MAX);
        let mut page: Vec<WorkerInfo> = Vec::new();
        let mut bytes = 0;
        // Sorted by id; workers are bounded (WORKERS_REMEMBERED_MAX).
        for worker in self.workers(now_ms) {
            if !page_token.is_empty() && worker.worker_id.as_str() <= page_token {
                continue;
            }
            let size = worker.encoded_len();
            if let Some(last) = page.last()
                && (page.len() == most || bytes + size > PAGE_BYTES_MAX)
            {
                let next = last.worker_id.clone();
                return (page, next);
            }
            bytes += size;
            page.push(worker);
        }
        (page, String::new())
    }
}

/// A page's size: what the caller asked for, 0 meaning (and anything above
/// capped to) `most`.
fn page_limit(asked: u32, most: usize) -> usize {
    match asked as usize {
        0 => most,
        n => n.min(most),
    }
}

/// `<unit>.<file>` of an outputs page token ((0, 0) when empty).
fn parse_outputs_token(token: &str) -> Result<(u32, u32), CoreError> {
    if token.is_empty() {
        return Ok((0, 0));
    }
    token
        .split_once('.')
        .and_then(|(u, f)| Some((u.parse().ok()?, f.parse().ok()?)))
        .ok_or_else(|| {
            CoreError::Invalid(format!(
                "page token {} is not one this master gave",
                shown(token)
            ))
        })
}

#[cfg(test)]
mod tests {
    use taskmaster_proto::v1::PipelineSpec;

    use super::*;
    use crate::core::tests::{core, done, two_groups};

    fn with_params(bytes: usize) -> PipelineSpec {
        let mut spec = two_groups(1);
        spec.params = (0..60)
            .map(|i| (format!("p{i}"), "v".repeat(bytes)))
            .collect();
        spec
    }

    #[test]
    fn pipelines_come_in_bounded_pages_that_cover_every_one_once() {
        let mut core = core();
        for i in 0..70 {
            core.submit(&format!("p-{i:02}"), with_params(4000), 0, 0)
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let (page, next) = core.list_page(&token, 0).unwrap();
            let bytes: usize = page.iter().map(|p| p.encoded_len()).sum();
            assert!(bytes <= PAGE_BYTES_MAX && !page.is_empty(), "{bytes}");
            seen.extend(page.into_iter().map(|p| p.pipeline_id));
            pages += 1;
            if next.is_empty() {
                break;
            }
            token = next;
        }
        let all: Vec<String> = (0..70).map(|i| format!("p-{i:02}")).collect();
        assert_eq!(seen, all);
        assert!(pages >= 5, "70 pipelines of 240 KB in {pages} pages");
        let (page, next) = core.list_page("", 3).unwrap();
        assert_eq!((page.len(), next.as_str()), (3, "p-02"));
        assert!(core.list_page("no-such", 3).is_err());
    }

    #[test]
    fn outputs_come_in_pages_that_may_split_a_unit() {
        let mut core = core();
        core.submit("p-1", two_groups(3), 0, 0).unwrap();
        let (_, leases) = core.lease("w", 3, false, 0).unwrap();
        let names = ["a", "b", "c", "d"];
        let items: Vec<_> = leases.iter().map(|l| done(l, &names)).collect();
        core.commit("tok", &items, 0).unwrap();
        let mut token = String::new();
        let mut got: Vec<(u32, usize)> = Vec::new();
        loop {
            let (page, next) = core.outputs_page("p-1", "a", &token, 5).unwrap();
            assert!(page.iter().map(|u| u.paths.len()).sum::<usize>() <= 5);
            got.extend(page.iter().map(|u| (u.unit, u.paths.len())));
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(got, [(0, 4), (1, 1), (1, 3), (2, 2), (2, 2)]);
        let whole = core.outputs("p-1", "a").unwrap();
        assert_eq!(whole.iter().map(|u| u.paths.len()).sum::<usize>(), 12);
        assert!(core.outputs_page("p-1", "a", "x.y", 0).is_err());
    }
}
