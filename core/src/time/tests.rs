use super::*;

#[test]
fn block_timestamp_epoch_and_slots() {
    assert_eq!(BlockTimestamp(0).to_string(), "2000-01-01T00:00:00.000");
    assert_eq!(BlockTimestamp(1).to_string(), "2000-01-01T00:00:00.500");
    let t: BlockTimestamp = "2024-01-01T00:00:50.000".parse().unwrap();
    assert_eq!(t.to_string(), "2024-01-01T00:00:50.000");
    assert_eq!(t.next().to_string(), "2024-01-01T00:00:50.500");
    assert_eq!(BlockTimestamp::from_time_point(t.to_time_point()), t);
    // 2024-01-01T00:00:50Z = 1704067250 s since the Unix epoch.
    assert_eq!(t.to_time_point().millis(), 1_704_067_250_000);
}

#[test]
fn time_point_sec_and_time_point() {
    let s: TimePointSec = "2018-06-15T19:17:47".parse().unwrap();
    assert_eq!(s.0, 1_529_090_267);
    assert_eq!(s.to_string(), "2018-06-15T19:17:47");
    let z: TimePointSec = "2018-06-15T19:17:47Z".parse().unwrap();
    assert_eq!(z, s);
    let p: TimePoint = "2018-06-15T19:17:47.123456".parse().unwrap();
    assert_eq!(p.0, 1_529_090_267_123_456);
    assert_eq!(p.to_string(), "2018-06-15T19:17:47.123");
    assert_eq!(TimePoint(-1).to_string(), "1969-12-31T23:59:59.999");
}

#[test]
fn leap_years_and_bad_dates() {
    assert!("2024-02-29T00:00:00".parse::<TimePointSec>().is_ok());
    for bad in [
        "2023-02-29T00:00:00",
        "2024-13-01T00:00:00",
        "2024-01-01 00:00:00",
        "2024-01-01T24:00:00",
        "2024-1-01T00:00:00",
        "1969-12-31T23:59:59",
        "2024-01-01T00:00:00.",
        "2024-01-01T00:00:00.1234567",
        "",
    ] {
        assert!(bad.parse::<TimePointSec>().is_err(), "{bad:?}");
    }
}

#[test]
fn many_days_round_trip() {
    for days in (-800_000i64..800_000).step_by(997) {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days);
    }
}

#[test]
fn extreme_time_points_round_trip_through_their_text() {
    // bin_to_json may meet any i64: what it writes must parse back (found by fuzzing).
    for us in [i64::MAX, i64::MIN, 300_000_000_000_000_000, -62_200_000_000_000_000, -1] {
        let text = TimePoint(us).to_string();
        let back: TimePoint = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(back.millis(), TimePoint(us).millis(), "{text}");
    }
    assert!("99999999999999-01-01T00:00:00".parse::<TimePoint>().is_err());
}
