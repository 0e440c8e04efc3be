//! A pipeline's groups drawn as an SVG graph, server-side: one column per
//! depth (a group sits one column right of its deepest upstream group),
//! each box with the group's progress, coloured by its state.

use maud::{Markup, html};
use taskmaster_proto::v1::GroupStatus;

use crate::core::ui_view::GroupShape;

const BOX_W: u32 = 170;
const BOX_H: u32 = 52;
const GAP_X: u32 = 60;
const GAP_Y: u32 = 18;
const MARGIN: u32 = 8;

/// The state a group is drawn in.
pub fn group_state(group: &GroupStatus) -> &'static str {
    let c = group.counts.unwrap_or_default();
    if c.failed > 0 {
        "failed"
    } else if group.complete {
        "succeeded"
    } else if c.leased > 0 || c.committed > 0 {
        "running"
    } else {
        "pending"
    }
}

/// Each group's column: the longest path of upstream groups before it.
fn depths(shapes: &[GroupShape]) -> Vec<u32> {
    let mut depth = vec![0u32; shapes.len()];
    // A validated DAG settles in at most one pass per group.
    for _ in 0..shapes.len() {
        let mut moved = false;
        for (g, shape) in shapes.iter().enumerate() {
            for &u in &shape.upstream {
                let want = depth.get(u as usize).map_or(0, |d| d + 1);
                if depth[g] < want {
                    depth[g] = want;
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    depth
}

pub fn svg(shapes: &[GroupShape], groups: &[GroupStatus]) -> Markup {
    let depth = depths(shapes);
    let mut row_in_column = vec![0u32; shapes.len() + 1];
    let mut at = Vec::with_capacity(shapes.len());
    for &d in &depth {
        let row = row_in_column[d as usize];
        row_in_column[d as usize] += 1;
        at.push((MARGIN + d * (BOX_W + GAP_X), MARGIN + row * (BOX_H + GAP_Y)));
    }
    let columns = depth.iter().max().map_or(1, |d| d + 1);
    let rows = row_in_column.iter().max().copied().unwrap_or(1).max(1);
    let width = 2 * MARGIN + columns * BOX_W + (columns - 1) * GAP_X;
    let height = 2 * MARGIN + rows * BOX_H + (rows - 1) * GAP_Y;
    html! {
        svg class="dag" xmlns="http://www.w3.org/2000/svg" width=(width) height=(height)
            viewBox=(format!("0 0 {width} {height}")) role="img" aria-label="pipeline graph" {
            @for (g, shape) in shapes.iter().enumerate() {
                @for &u in &shape.upstream {
                    @if let Some(&(ux, uy)) = at.get(u as usize) {
                        path class="edge" d=(format!(
                            "M{} {} C{} {} {} {} {} {}",
                            ux + BOX_W, uy + BOX_H / 2,
                            ux + BOX_W + GAP_X / 2, uy + BOX_H / 2,
                            at[g].0 - GAP_X / 2, at[g].1 + BOX_H / 2,
                            at[g].0, at[g].1 + BOX_H / 2
                        )) {}
                    }
                }
            }
            @for ((shape, group), &(x, y)) in shapes.iter().zip(groups).zip(&at) {
                @let c = group.counts.unwrap_or_default();
                @let total = c.pending + c.leased + c.committed + c.failed;
                @let done = (c.committed * u64::from(BOX_W - 16)).checked_div(total).unwrap_or(0) as u32;
                g class=(format!("node st-{}", group_state(group))) data-group=(shape.name) {
                    rect x=(x) y=(y) width=(BOX_W) height=(BOX_H) rx="6" {}
                    text x=(x + 8) y=(y + 18) { (shape.name) }
                    text class="small" x=(x + 8) y=(y + 33) {
                        (c.committed) "/" (total)
                        @if c.failed > 0 { " · " (c.failed) " failed" }
                    }
                    rect class="bar" x=(x + 8) y=(y + 40) width=(BOX_W - 16) height="6" {}
                    rect class="fill" x=(x + 8) y=(y + 40) width=(done) height="6" {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(name: &str, upstream: &[u32]) -> GroupShape {
        GroupShape {
            name: name.into(),
            task: "exec".into(),
            upstream: upstream.to_vec(),
            max_attempts: 3,
        }
    }

    #[test]
    fn a_group_sits_right_of_its_deepest_upstream() {
        // c after a and b, b after a; d listed first but after c.
        let shapes = [
            shape("d", &[3]),
            shape("a", &[]),
            shape("b", &[1]),
            shape("c", &[1, 2]),
        ];
        assert_eq!(depths(&shapes), vec![3, 0, 1, 2]);
    }
}
