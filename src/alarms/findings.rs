//! The station diagnosis' findings as `finding` points for storage: each one named, and each
//! one gone, since the last status snapshot.
//!
//! Where it sits: in the alarm task, per station of each snapshot, beside its alarm checks.

use crate::control::status::StationStatus;
use crate::store::record::FindingPoint;

/// The `finding` points of station `st`'s findings named or cleared since `before` (which
/// becomes the kinds in force now).
pub fn points(
    before: &mut Vec<crate::diagnose::Kind>,
    st: &StationStatus,
    now: i64,
) -> Vec<FindingPoint> {
    let point = |f: &crate::diagnose::Finding, active: bool| FindingPoint {
        station: st.id.as_str().to_owned(),
        kind: f.kind.as_str(),
        active,
        confidence: f.confidence,
        evidence: f.evidence.clone(),
        since_ms: f.since_ms,
        ts_ms: now,
    };
    let mut out: Vec<FindingPoint> = st
        .findings
        .iter()
        .filter(|f| !before.contains(&f.kind))
        .map(|f| point(f, true))
        .collect();
    for gone in before
        .iter()
        .filter(|k| !st.findings.iter().any(|f| f.kind == **k))
    {
        out.push(FindingPoint {
            station: st.id.as_str().to_owned(),
            kind: gone.as_str(),
            active: false,
            confidence: 0.0,
            evidence: String::new(),
            since_ms: 0,
            ts_ms: now,
        });
    }
    if !out.is_empty() {
        *before = st.findings.iter().map(|f| f.kind).collect();
    }
    out
}
