//! `signer stats [--owner O] [--scope S] [--json]`: usage per owner and scope from a
//! running signer (`GET /v1/stats`), with the operator credential of
//! `BMAT_OPERATOR_TOKEN`.

use bmat_wire::api::{Activity, Usage};
use clap::Args;

use super::client::Target;

#[derive(Args)]
pub struct StatsArgs {
    #[command(flatten)]
    target: Target,
    /// Only this owner (default: every owner the credential covers).
    #[arg(long)]
    owner: Option<String>,
    /// Only this scope.
    #[arg(long)]
    scope: Option<String>,
    /// Print the API's JSON answer instead of lines for people.
    #[arg(long)]
    json: bool,
}

pub async fn run(a: StatsArgs) -> anyhow::Result<()> {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(owner) = &a.owner {
        query.append_pair("owner", owner);
    }
    if let Some(scope) = &a.scope {
        query.append_pair("scope", scope);
    }
    let query = query.finish();
    let path = if query.is_empty() {
        "/v1/stats".to_owned()
    } else {
        format!("/v1/stats?{query}")
    };
    let usage: Usage = a
        .target
        .call::<(), Usage>(reqwest::Method::GET, &path, None)
        .await?;
    if a.json {
        println!("{}", serde_json::to_string(&usage)?);
    } else {
        print!("{}", render(&usage));
    }
    Ok(())
}

/// One line per owner, then one per scope, indented.
pub fn render(usage: &Usage) -> String {
    if usage.owners.is_empty() {
        return "no caches and no activity in the last week\n".to_owned();
    }
    let mut out = String::new();
    for o in &usage.owners {
        let share = if o.quota == 0 {
            0.0
        } else {
            o.bytes as f64 * 100.0 / o.quota as f64
        };
        out.push_str(&format!(
            "{}: {} of {} quota ({share:.1} %), {} logical, {} caches; {}\n",
            o.owner,
            size(o.bytes),
            size(o.quota),
            size(o.logical_bytes),
            o.caches,
            windows(&o.last_day, &o.last_week)
        ));
        for s in &o.scopes {
            out.push_str(&format!(
                "  {}: {}, {} logical, {} caches; {}\n",
                s.scope,
                size(s.bytes),
                size(s.logical_bytes),
                s.caches,
                windows(&s.last_day, &s.last_week)
            ));
        }
    }
    out
}

fn windows(day: &Activity, week: &Activity) -> String {
    let one = |a: &Activity| {
        format!(
            "{} hits, {} misses, {} evictions",
            a.hits, a.misses, a.evictions
        )
    };
    format!("last day: {}; last week: {}", one(day), one(week))
}

/// Bytes in binary units, one decimal.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use bmat_wire::api::{OwnerUsage, ScopeUsage};

    use super::*;

    #[test]
    fn one_line_per_owner_and_scope() {
        let hits = Activity {
            hits: 3,
            misses: 1,
            evictions: 0,
        };
        let usage = Usage {
            owners: vec![OwnerUsage {
                owner: "alpha".into(),
                quota: 1 << 30,
                bytes: 3 << 20,
                logical_bytes: 5 << 20,
                caches: 2,
                last_day: hits,
                last_week: hits,
                scopes: vec![ScopeUsage {
                    scope: "refs/heads/main".into(),
                    bytes: 3 << 20,
                    logical_bytes: 5 << 20,
                    caches: 2,
                    last_day: hits,
                    last_week: hits,
                }],
            }],
        };
        assert_eq!(
            render(&usage),
            "alpha: 3.0 MiB of 1.0 GiB quota (0.3 %), 5.0 MiB logical, 2 caches; last day: 3 \
             hits, 1 misses, 0 evictions; last week: 3 hits, 1 misses, 0 evictions\n  \
             refs/heads/main: 3.0 MiB, 5.0 MiB logical, 2 caches; last day: 3 hits, 1 misses, 0 evictions; last week: 3 hits, 1 misses, \
             0 evictions\n"
        );
        assert_eq!(size(1000), "1000 B");
    }
}
