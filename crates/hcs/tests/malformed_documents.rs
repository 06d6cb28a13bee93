//! Bad input never crashes anything and never leaves anything behind: thousands of
//! mutated `ComputeSystem` documents (bytes flipped, cut, spliced; values swapped for
//! other JSON) go through `create_compute_system`. Each create either succeeds or fails
//! with a documented HRESULT and a readable `ResultError`; at the end no system, VM or
//! handle is left. One test, so that its leak check sees only its own objects.

mod common;

use common::{c_empty_vm, require_kvm, unique_id};
use hcs::api::*;
use hcs::{HResult, INFINITE};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::time::{Duration, Instant};

const DOCUMENTS: usize = 3_000;

/// Values a member may be replaced with.
const VALUES: &[&str] = &[
    "null",
    "0",
    "-1",
    "1",
    "4294967296",
    "1e3",
    "18446744073709551616",
    "\"\"",
    "\"x\"",
    "[]",
    "{}",
    "true",
    "[1,2]",
    "{\"A\":1}",
    "\"\\u0000\"",
    "2.5",
];

fn mutate(rng: &mut StdRng, base: &str) -> String {
    let mut bytes = base.as_bytes().to_vec();
    match rng.gen_range(0..5) {
        // Flip a few bytes.
        0 => {
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] = rng.gen();
            }
        }
        // Cut the document short.
        1 => bytes.truncate(rng.gen_range(0..bytes.len())),
        // Duplicate a slice somewhere else.
        2 => {
            let start = rng.gen_range(0..bytes.len());
            let end = (start + rng.gen_range(1..40)).min(bytes.len());
            let slice = bytes[start..end].to_vec();
            let at = rng.gen_range(0..bytes.len());
            bytes.splice(at..at, slice);
        }
        // Replace a value after a colon with another JSON value.
        3 => {
            let colons: Vec<usize> = base.match_indices(':').map(|(i, _)| i).collect();
            let at = colons[rng.gen_range(0..colons.len())] + 1;
            let rest = &base[at..];
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            let value = VALUES[rng.gen_range(0..VALUES.len())];
            return format!("{}{}{}", &base[..at], value, &rest[end..]);
        }
        // Rename a property by changing its case.
        _ => {
            let quotes: Vec<usize> = base.match_indices('"').map(|(i, _)| i + 1).collect();
            let at = quotes[rng.gen_range(0..quotes.len())];
            if at < bytes.len() {
                bytes[at] = bytes[at].to_ascii_lowercase();
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn mutated_documents_fail_cleanly_and_leave_nothing() {
    require_kvm();
    let mut rng = StdRng::seed_from_u64(0xBAD_D0C);
    let base = c_empty_vm();
    let documented = [
        HResult::HCS_E_INVALID_JSON,
        HResult::ERROR_NOT_SUPPORTED,
        HResult::E_OUTOFMEMORY,
    ];
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..DOCUMENTS {
        let document = mutate(&mut rng, &base);
        let op = create_operation(0, None);
        let system = create_compute_system(&unique_id("fuzz"), &document, op, None)
            .expect("a create with a valid id and operation is accepted");
        let (hresult, error) = wait_for_operation_result(op, INFINITE);
        if hresult == HResult::S_OK {
            accepted += 1;
            assert_eq!(terminate_compute_system(system, op, None), HResult::S_OK);
            assert_eq!(wait_for_operation_result(op, INFINITE).0, HResult::S_OK);
        } else {
            refused += 1;
            assert!(
                documented.contains(&hresult),
                "undocumented {hresult} for {document:?}: {error:?}"
            );
            let error: serde_json::Value =
                serde_json::from_str(error.as_deref().expect("a ResultError")).unwrap();
            assert_eq!(error["Error"], hresult.0);
            assert!(error["ErrorMessage"]
                .as_str()
                .is_some_and(|m| m.starts_with('$')));
        }
        close_operation(op);
        close_compute_system(system);
    }
    eprintln!("{accepted} accepted, {refused} refused");
    assert!(
        refused > DOCUMENTS / 2,
        "the mutations should mostly break the document"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live = live_counts();
        let clean = live.systems == 0 && live.vms == 0;
        if clean || Instant::now() > deadline {
            assert_eq!(live.systems, 0, "{live:?}");
            assert_eq!(live.vms, 0, "{live:?}");
            assert_eq!(live.operations, 0, "{live:?}");
            assert_eq!(live.system_handles, 0, "{live:?}");
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
