//! The campaign plan: one [`PlannedRun`] per migration, with a deterministic id.

use std::collections::BTreeMap;

use datasets::migrations::MigrationRow;
use datasets::rounds::RoundRow;

use super::config::{Config, HypervisorKind};
use super::CampaignError;
use crate::output::safe_name;

/// One planned migration.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRun {
    /// Position in the plan, from 0.
    pub index: usize,
    /// Deterministic id: the same config gives the same ids, so a resumed campaign knows
    /// what it has done.
    pub migration_id: String,
    /// VM name.
    pub vm: String,
    /// Guest memory, bytes.
    pub vm_mem_bytes: u64,
    /// Workload label.
    pub workload: String,
    /// Bandwidth limit, bytes/s (None: the hypervisor's default).
    pub bandwidth_bytes_per_s: Option<u64>,
    /// QEMU downtime limit, ms (None: `[hypervisor] downtime_limit_ms`).
    pub downtime_limit_ms: Option<u64>,
    /// Repetition, from 1.
    pub repetition: u32,
    /// Kind `replay`: the recorded migration to replay.
    pub replay: Option<(MigrationRow, Vec<RoundRow>)>,
    /// Kind `replay`: the recorded host activity of that migration (empty: none recorded).
    pub activity: Vec<crate::hostpower::ActivitySample>,
}

impl PlannedRun {
    /// Replace the placeholders `{migration_id} {vm} {vm_mem_bytes} {vm_mem_mib} {workload}
    /// {bandwidth_bytes_per_s} {repetition} {downtime_limit_ms}` and the `extra` (name, value) pairs in `template`.
    pub fn expand(&self, template: &str, extra: &[(&str, String)]) -> String {
        let mut s = template
            .replace("{migration_id}", &self.migration_id)
            .replace("{vm}", &self.vm)
            .replace("{vm_mem_bytes}", &self.vm_mem_bytes.to_string())
            .replace("{vm_mem_mib}", &(self.vm_mem_bytes >> 20).to_string())
            .replace("{workload}", &self.workload)
            .replace(
                "{bandwidth_bytes_per_s}",
                &self
                    .bandwidth_bytes_per_s
                    .map_or(String::new(), |b| b.to_string()),
            )
            .replace("{repetition}", &self.repetition.to_string())
            .replace(
                "{downtime_limit_ms}",
                &self
                    .downtime_limit_ms
                    .map_or(String::new(), |d| d.to_string()),
            );
        for (k, v) in extra {
            s = s.replace(&format!("{{{k}}}"), v);
        }
        s
    }
}

/// One combination of the plan: VM, workload, (bandwidth label, B/s), downtime limit (ms).
type Combo = (String, String, (String, Option<u64>), Option<u64>);

/// A bandwidth of the config: its id label and bytes/s.
fn bandwidth(b: &str) -> Result<(String, Option<u64>), CampaignError> {
    let v = datasets::quantity::parse_rate_bytes_per_s(b)
        .map_err(|e| CampaignError::Plan(format!("bandwidth \"{b}\": {e}")))?;
    Ok((b.replace('/', "p"), Some(v.round() as u64)))
}

/// The migrations of a config, in the order they run: repetitions outermost, then VMs,
/// workloads, bandwidths and downtime limits, so a campaign cut short still covers every
/// combination evenly; or, with `[[plan.runs]]`, those runs in order, `repetitions` times.
/// Ids are `VM-WORKLOAD-BANDWIDTH[-dlMSms]-rN` (the downtime part only when the plan
/// varies it, or when an explicit run sets it), the same for the same config.
pub fn build(
    config: &Config,
    replay: Option<&[(MigrationRow, Vec<RoundRow>)]>,
) -> Result<Vec<PlannedRun>, CampaignError> {
    if config.hypervisor.kind == HypervisorKind::Replay {
        let rows = replay.unwrap_or_default();
        let count = config.hypervisor.replay_count.unwrap_or(6);
        return Ok(replay_plan(rows, count));
    }
    let mem_of = |name: &str| -> Result<u64, CampaignError> {
        let vm = config
            .vms
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| CampaignError::Plan(format!("no VM named `{name}` in [[vms]]")))?;
        let mem = datasets::quantity::parse_size_bytes(&vm.mem)
            .map_err(|e| CampaignError::Plan(format!("VM {}: mem \"{}\": {e}", vm.name, vm.mem)))?;
        Ok(mem.round() as u64)
    };
    let mut combos: Vec<Combo> = Vec::new();
    let varies_downtime;
    if config.plan.runs.is_empty() {
        let bandwidths: Vec<(String, Option<u64>)> = if config.plan.bandwidths.is_empty() {
            vec![("default".into(), None)]
        } else {
            config
                .plan
                .bandwidths
                .iter()
                .map(|b| bandwidth(b))
                .collect::<Result<_, CampaignError>>()?
        };
        let limits: Vec<Option<u64>> = if config.plan.downtime_limits_ms.is_empty() {
            vec![None]
        } else {
            config
                .plan
                .downtime_limits_ms
                .iter()
                .map(|d| Some(*d))
                .collect()
        };
        varies_downtime = !config.plan.downtime_limits_ms.is_empty();
        for vm in &config.vms {
            for w in &config.plan.workloads {
                for bw in &bandwidths {
                    for d in &limits {
                        combos.push((vm.name.clone(), w.clone(), bw.clone(), *d));
                    }
                }
            }
        }
    } else {
        // Explicit runs name their downtime limit only when they set one.
        varies_downtime = false;
        for r in &config.plan.runs {
            let bw = match &r.bandwidth {
                Some(b) => bandwidth(b)?,
                None => ("default".into(), None),
            };
            combos.push((r.vm.clone(), r.workload.clone(), bw, r.downtime_limit_ms));
        }
    }
    let mut out = Vec::new();
    for rep in 1..=config.plan.repetitions {
        for (vm, w, (label, bw), d) in &combos {
            let dl = match (varies_downtime, d) {
                (_, Some(d)) => format!("-dl{d}ms"),
                (true, None) => "-dldefault".into(),
                (false, None) => String::new(),
            };
            let id = safe_name(&format!("{vm}-{w}-{label}{dl}-r{rep}"));
            out.push(PlannedRun {
                index: out.len(),
                migration_id: id,
                vm: vm.clone(),
                vm_mem_bytes: mem_of(vm)?,
                workload: w.clone(),
                bandwidth_bytes_per_s: *bw,
                downtime_limit_ms: *d,
                repetition: rep,
                replay: None,
                activity: Vec::new(),
            });
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in &out {
        if !seen.insert(r.migration_id.clone()) {
            return Err(CampaignError::Plan(format!(
                "two planned migrations get the id `{}`: make VM names, workloads, bandwidths and downtime limits distinct",
                r.migration_id
            )));
        }
    }
    Ok(out)
}

/// `count` converged recorded migrations spread over their workloads and V_mig range.
fn replay_plan(rows: &[(MigrationRow, Vec<RoundRow>)], count: usize) -> Vec<PlannedRun> {
    let ok: Vec<_> = rows
        .iter()
        .filter(|(r, _)| r.converged && r.t_mig_s > 0.5 && r.v_mig_bytes > 0)
        .collect();
    if ok.is_empty() {
        return Vec::new();
    }
    // Per workload, picks spread from its smallest to its largest V_mig (its median when
    // only one fits): every dirtying rate is covered (the gamma fit needs several) and so is
    // the V_mig range.
    let mut groups: BTreeMap<Option<String>, Vec<_>> = BTreeMap::new();
    for r in ok {
        groups.entry(r.0.workload.clone()).or_default().push(r);
    }
    let n = count.max(1);
    let per = n.div_ceil(groups.len()).max(1);
    let mut picks = Vec::new();
    for g in groups.values_mut() {
        g.sort_by(|a, b| {
            (a.0.v_mig_bytes, &a.0.migration_id).cmp(&(b.0.v_mig_bytes, &b.0.migration_id))
        });
        let k = per.min(g.len());
        if k == 1 {
            // One per workload: its median, a typical migration of it (its largest may be a
            // long outlier the demo would wait for).
            picks.push(g[(g.len() - 1) / 2]);
        } else {
            picks.extend((0..k).map(|i| g[i * (g.len() - 1) / (k - 1)]));
        }
    }
    picks.sort_by(|a, b| {
        (a.0.v_mig_bytes, &a.0.migration_id).cmp(&(b.0.v_mig_bytes, &b.0.migration_id))
    });
    picks.dedup_by(|a, b| a.0.migration_id == b.0.migration_id);
    // Too many when the groups do not divide `count`: thin evenly, keeping both ends.
    if picks.len() > n {
        let all = std::mem::take(&mut picks);
        picks = if n == 1 {
            vec![all[all.len() - 1]]
        } else {
            (0..n).map(|i| all[i * (all.len() - 1) / (n - 1)]).collect()
        };
    }
    picks
        .into_iter()
        .enumerate()
        .map(|(i, (row, rounds))| PlannedRun {
            index: i,
            migration_id: safe_name(&format!("replay-{:02}-{}", i + 1, row.migration_id)),
            vm: row.vm.clone(),
            vm_mem_bytes: row.vm_mem_bytes,
            workload: row.workload.clone().unwrap_or_else(|| "unlabelled".into()),
            bandwidth_bytes_per_s: row.bandwidth_limit_bytes_per_s.map(|b| b.round() as u64),
            downtime_limit_ms: None,
            repetition: 1,
            replay: Some((row.clone(), rounds.clone())),
            activity: Vec::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::config::{parse, EXAMPLE_CONFIG};

    #[test]
    fn example_plan_is_the_full_factorial_with_stable_ids() {
        let c = parse(EXAMPLE_CONFIG).unwrap();
        let p = build(&c, None).unwrap();
        assert_eq!(p.len(), 2 * 4 * 2 * 3);
        assert_eq!(p[0].migration_id, "vm-4g-h2-1Gbitps-r1");
        assert_eq!(p[0].bandwidth_bytes_per_s, Some(125_000_000));
        assert_eq!(p[0].vm_mem_bytes, 4 << 30);
        assert_eq!(p.last().unwrap().repetition, 3);
        assert_eq!(build(&c, None).unwrap(), p);
        let cmd = p[0].expand("run {vm} {vm_mem_mib} {workload} {x}", &[("x", "y".into())]);
        assert_eq!(cmd, "run vm-4g 4096 h2 y");
        assert_eq!(p[0].downtime_limit_ms, None);
    }

    #[test]
    fn downtime_limits_multiply_the_plan_and_name_the_ids() {
        let text = EXAMPLE_CONFIG.replace(
            "repetitions = 3",
            "repetitions = 1\ndowntime_limits_ms = [30, 300]",
        );
        let p = build(&parse(&text).unwrap(), None).unwrap();
        assert_eq!(p.len(), 2 * 4 * 2 * 2);
        assert_eq!(p[0].migration_id, "vm-4g-h2-1Gbitps-dl30ms-r1");
        assert_eq!(p[1].downtime_limit_ms, Some(300));
        assert_eq!(p[1].expand("{downtime_limit_ms}", &[]), "300");
    }

    #[test]
    fn explicit_runs_replace_the_cross_product() {
        let text = EXAMPLE_CONFIG
            .replace("bandwidths = [\"1Gbit/s\", \"500Mbit/s\"]", "")
            .replace("repetitions = 3", "repetitions = 2")
            + r#"
[[plan.runs]]
vm = "vm-4g"
workload = "h2"
bandwidth = "1Gbit/s"
downtime_limit_ms = 100

[[plan.runs]]
vm = "vm-8g"
workload = "xalan"
"#;
        let p = build(&parse(&text).unwrap(), None).unwrap();
        let ids: Vec<_> = p.iter().map(|r| r.migration_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "vm-4g-h2-1Gbitps-dl100ms-r1",
                "vm-8g-xalan-default-r1",
                "vm-4g-h2-1Gbitps-dl100ms-r2",
                "vm-8g-xalan-default-r2"
            ]
        );
        assert_eq!(p[1].vm_mem_bytes, 8 << 30);
        assert_eq!(p[0].bandwidth_bytes_per_s, Some(125_000_000));
        assert_eq!(build(&parse(&text).unwrap(), None).unwrap(), p);
        // A run naming an unknown VM, and runs mixed with bandwidths, are refused.
        let e = parse(&text.replace("vm = \"vm-8g\"\nworkload", "vm = \"vm-1t\"\nworkload"))
            .unwrap_err();
        assert!(e.contains("[[plan.runs]] #2") && e.contains("vm-1t"), "{e}");
        let e = parse(&text.replace(
            "repetitions = 2",
            "repetitions = 2\nbandwidths = [\"1Gbit/s\"]",
        ))
        .unwrap_err();
        assert!(e.contains("explicit runs"), "{e}");
    }
}
