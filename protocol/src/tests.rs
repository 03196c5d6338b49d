use super::*;

#[test]
fn missing_fields_stay_missing() {
    let s: GpuSample =
        serde_json::from_str(r#"{"time":"2026-01-01T00:00:00Z","gpu":1,"power_w":123.5}"#)
            .expect("parses");
    assert_eq!(s.energy_mj, None);
    assert_eq!(s.util_pct, None);
    let back = serde_json::to_string(&s).expect("serialises");
    assert!(!back.contains("energy_mj"), "{back}");
}

#[test]
fn job_ids_are_encoded_as_one_segment() {
    assert_eq!(paths::job("12_3"), "/api/v1/jobs/12_3");
    assert_eq!(paths::job("a/b c"), "/api/v1/jobs/a%2Fb%20c");
}
