//! The settings of `[policy]` in `neo.toml` and `[apply]` in region files, and the durations
//! they are written with.
//!
//! A duration is a whole number followed by a unit: `ms`, `s`, `min`, `h` or `d` (days).
//! Timeouts must be positive; `[policy] destroy_after` may be zero (no retention).

use std::time::Duration;

use toml::Spanned;

use super::diagnostic::{Diagnostics, SourceText};
use super::raw::{RawApply, RawPolicy};
use super::region::{ApplySettings, TransactionShape};
use super::state::{MaxPrune, Policy};

/// The units of a duration, as messages list them.
const DURATION_UNITS: &str = "ms, s, min, h or d";

/// The highest `[apply] retries`.
const MAX_RETRIES: u32 = 10;

/// `"5s"`, `"250ms"`, `"10min"`, `"1h"`, `"30d"`: a positive whole number and a unit.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    parse_duration_or_zero(s).filter(|d| !d.is_zero())
}

/// As [`parse_duration`], but zero (`"0s"`) is allowed too.
pub(crate) fn parse_duration_or_zero(s: &str) -> Option<Duration> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "min" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        "d" => Duration::from_secs(n.checked_mul(24 * 3600)?),
        _ => return None,
    })
}

/// Reads `[apply]` of a region file, every setting optional; `None` when one is invalid (each
/// mistake is reported).
pub(super) fn check_apply(
    diags: &mut Diagnostics,
    src: &SourceText,
    apply: Option<&Spanned<RawApply>>,
) -> Option<ApplySettings> {
    let mut settings = ApplySettings::default();
    let Some(apply) = apply else {
        return Some(settings);
    };
    let a = apply.get_ref();
    let mut ok = true;
    for (field, value, slot) in [
        (
            "apply.max_parallel",
            &a.max_parallel,
            &mut settings.max_parallel,
        ),
        (
            "apply.max_failures",
            &a.max_failures,
            &mut settings.max_failures,
        ),
    ] {
        if let Some(v) = value {
            match u32::try_from(*v.get_ref()) {
                Ok(n) if (1..=1024).contains(&n) => *slot = n,
                _ => {
                    ok = false;
                    diags.error(
                        src,
                        v.span(),
                        field,
                        format!(
                            "{} is out of range: use a whole number from 1 to 1024",
                            v.get_ref()
                        ),
                    );
                }
            }
        }
    }
    for (field, value, slot) in [
        (
            "apply.lock_timeout",
            &a.lock_timeout,
            &mut settings.lock_timeout,
        ),
        (
            "apply.statement_timeout",
            &a.statement_timeout,
            &mut settings.statement_timeout,
        ),
        ("apply.lock_wait", &a.lock_wait, &mut settings.lock_wait),
    ] {
        if let Some(v) = value {
            match parse_duration(v.get_ref()) {
                Some(d) => *slot = d,
                None => {
                    ok = false;
                    diags.error(
                        src,
                        v.span(),
                        field,
                        format!(
                            "invalid duration {:?}: use a positive whole number followed by {DURATION_UNITS}, such as \"5s\"",
                            v.get_ref()
                        ),
                    );
                }
            }
        }
    }
    if let Some(v) = &a.retries {
        match u32::try_from(*v.get_ref()) {
            Ok(n) if n <= MAX_RETRIES => settings.retries = n,
            _ => {
                ok = false;
                diags.error(
                    src,
                    v.span(),
                    "apply.retries",
                    format!(
                        "{} is out of range: use a whole number from 0 to {MAX_RETRIES}",
                        v.get_ref()
                    ),
                );
            }
        }
    }
    if let Some(v) = &a.transaction {
        match v.get_ref().as_str() {
            "per_tenant" => settings.transaction = TransactionShape::PerTenant,
            "per_migration" => settings.transaction = TransactionShape::PerMigration,
            other => {
                ok = false;
                diags.error(
                    src,
                    v.span(),
                    "apply.transaction",
                    format!(
                        "unknown transaction shape {other:?}: use one of {}",
                        TransactionShape::NAMES.join(", ")
                    ),
                );
            }
        }
    }
    ok.then_some(settings)
}

/// Reads `[policy]` of `neo.toml`. A mistake is reported and the default is used in its place,
/// so that the checks depending on the policy (the warning about deleted tenants) still run.
pub(super) fn check_policy(
    diags: &mut Diagnostics,
    src: &SourceText,
    raw: Option<&Spanned<RawPolicy>>,
) -> Policy {
    let mut policy = Policy::default();
    let Some(raw) = raw.map(Spanned::get_ref) else {
        return policy;
    };
    if let Some(b) = &raw.allow_destroy {
        policy.allow_destroy = *b.get_ref();
    }
    if let Some(b) = &raw.allow_rollback {
        policy.allow_rollback = *b.get_ref();
    }
    if let Some(v) = &raw.max_prune {
        match parse_max_prune(v.get_ref()) {
            Some(m) => policy.max_prune = m,
            None => diags.error(
                src,
                v.span(),
                "policy.max_prune",
                format!(
                    "invalid max_prune {}: use a whole number of tenants (such as 5) or a percentage from 0% to 100% (such as \"10%\")",
                    v.get_ref()
                ),
            ),
        }
    }
    if let Some(v) = &raw.destroy_after {
        match parse_duration_or_zero(v.get_ref()) {
            Some(d) => policy.destroy_after = d,
            None => diags.error(
                src,
                v.span(),
                "policy.destroy_after",
                format!(
                    "invalid duration {:?}: use a whole number followed by {DURATION_UNITS}, such as \"30d\" (\"0s\" keeps nothing)",
                    v.get_ref()
                ),
            ),
        }
    }
    policy
}

/// `[policy] max_prune`: a whole number of tenants (`5`, also as `"5"`) or a percentage from
/// 0 to 100 (`"10%"`).
fn parse_max_prune(v: &toml::Value) -> Option<MaxPrune> {
    match v {
        toml::Value::Integer(n) => u32::try_from(*n).ok().map(MaxPrune::Count),
        toml::Value::String(s) => match s.strip_suffix('%') {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().ok().filter(|p| *p <= 100).map(MaxPrune::Percent)
            }
            Some(_) => None,
            None if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().ok().map(MaxPrune::Count)
            }
            None => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10min"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(
            parse_duration("30d"),
            Some(Duration::from_secs(30 * 86_400))
        );
        for bad in ["", "5", "0s", "0d", "-1s", "5 s", "5sec", "s", "1w", "1D"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_of_zero_only_where_allowed() {
        assert_eq!(parse_duration_or_zero("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("0d"), Some(Duration::ZERO));
        assert_eq!(
            parse_duration_or_zero("7d"),
            Some(Duration::from_secs(7 * 86_400))
        );
        for bad in ["", "0", "-0s", "d", "1 d"] {
            assert_eq!(parse_duration_or_zero(bad), None, "{bad}");
        }
        // A number of days that overflows is an invalid duration, not a panic.
        assert_eq!(parse_duration_or_zero(&format!("{}d", u64::MAX)), None);
    }

    #[test]
    fn max_prune_is_a_count_or_a_percentage() {
        use toml::Value;
        let check =
            |v: Value, expect: Option<MaxPrune>| assert_eq!(parse_max_prune(&v), expect, "{v}");
        check(Value::Integer(5), Some(MaxPrune::Count(5)));
        check(Value::Integer(0), Some(MaxPrune::Count(0)));
        check(Value::String("7".into()), Some(MaxPrune::Count(7)));
        check(Value::String("10%".into()), Some(MaxPrune::Percent(10)));
        check(Value::String("100%".into()), Some(MaxPrune::Percent(100)));
        for bad in ["101%", "%", "-1%", "ten", "", "1.5%", "5 %"] {
            check(Value::String(bad.into()), None);
        }
        check(Value::Integer(-1), None);
        check(Value::Boolean(true), None);
        // A percentage rounds down but allows at least one tenant.
        assert_eq!(MaxPrune::Percent(10).limit(60), 6);
        assert_eq!(MaxPrune::Percent(10).limit(5), 1);
        assert_eq!(MaxPrune::Count(0).limit(60), 0);
    }

    #[test]
    fn defaults_of_the_new_settings() {
        assert_eq!(
            Policy::default().destroy_after,
            Duration::from_secs(30 * 86_400)
        );
        assert!(!Policy::default().allow_destroy);
        assert!(!Policy::default().allow_rollback);
        assert_eq!(Policy::default().max_prune, MaxPrune::Percent(10));
        assert_eq!(ApplySettings::default().retries, 3);
    }
}
