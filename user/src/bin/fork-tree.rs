//! fork-tree [depth]: fork a binary tree of processes and check every exit status.
//!
//! Processes are numbered as in a heap: the root is 1, the children of n are 2n and 2n+1.
//! Every process forks its two children (until `depth`), waits for both with wait4, checks that
//! each one's status is the one its number says, and then exits with its own expected status, or
//! with FAILED if anything below it was wrong. So the root knows the whole tree was right when
//! its two children's statuses are. Exits 0 only then.
#![no_std]
#![no_main]

use ulib::sys::{self, ExitStatus, Fork};
use ulib::{eprintln, println};

ulib::entry!(main);

const MAX_DEPTH: u64 = 7;
/// Never an expected status (those are 1..=200).
const FAILED: i32 = 255;

fn expected_status(position: u64) -> u8 {
    (position % 200 + 1) as u8
}

/// Run node `position` at `level` (the root is level 0): fork and check the children, and return
/// how many statuses were checked in this subtree, or None if any was wrong.
fn node(position: u64, level: u64, depth: u64) -> Option<u64> {
    if level == depth {
        return Some(0);
    }
    let mut children = [(0i32, 0u64); 2];
    for (slot, child_position) in children.iter_mut().zip([2 * position, 2 * position + 1]) {
        match sys::fork() {
            Ok(Fork::Child) => {
                let status = match node(child_position, level + 1, depth) {
                    Some(_) => expected_status(child_position) as i32,
                    None => FAILED,
                };
                sys::exit(status);
            }
            Ok(Fork::Parent(pid)) => *slot = (pid, child_position),
            Err(e) => {
                eprintln!("fork-tree: node {position}: fork failed: {e}");
                return None;
            }
        }
    }
    let mut all_right = true;
    for _ in 0..2 {
        let (pid, status) = match sys::wait4(-1) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("fork-tree: node {position}: wait4 failed: {e}");
                return None;
            }
        };
        let Some(&(_, child_position)) = children.iter().find(|(p, _)| *p == pid) else {
            eprintln!("fork-tree: node {position}: wait4 returned pid {pid}, not a child");
            all_right = false;
            continue;
        };
        let want = ExitStatus::Exited(expected_status(child_position));
        if status != want {
            eprintln!(
                "fork-tree: node {child_position} (pid {pid}) ended {status:?}, expected {want:?}"
            );
            all_right = false;
        }
    }
    // A wrong status below would have made a child exit FAILED; when both are right, each child
    // checked every status in its own subtree (2^(depth-level) - 2 of them), and we checked 2.
    let per_child = (1u64 << (depth - level)) - 2;
    all_right.then_some(2 * per_child + 2)
}

fn main(args: ulib::Args) -> i32 {
    let depth = args.number_or(1, 3);
    if depth > MAX_DEPTH {
        eprintln!(
            "fork-tree: depth {depth} is more than {MAX_DEPTH} ({} processes)",
            (1u64 << (depth + 1)) - 1
        );
        return 2;
    }
    match node(1, 0, depth) {
        Some(checked) => {
            println!(
                "fork-tree: depth {depth}: {} processes, {checked} exit statuses checked, all right",
                (1u64 << (depth + 1)) - 1
            );
            0
        }
        None => {
            println!("fork-tree: depth {depth}: FAILED (see the lines above)");
            1
        }
    }
}
