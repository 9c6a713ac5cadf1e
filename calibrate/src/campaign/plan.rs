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
    /// Repetition, from 1.
    pub repetition: u32,
    /// Kind `replay`: the recorded migration to replay.
    pub replay: Option<(MigrationRow, Vec<RoundRow>)>,
}

impl PlannedRun {
    /// Replace the placeholders `{migration_id} {vm} {vm_mem_bytes} {vm_mem_mib} {workload}
    /// {bandwidth_bytes_per_s} {repetition}` and the `extra` (name, value) pairs in `template`.
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
            .replace("{repetition}", &self.repetition.to_string());
        for (k, v) in extra {
            s = s.replace(&format!("{{{k}}}"), v);
        }
        s
    }
}

/// The migrations of a config, in the order they run: repetitions outermost, then VMs,
/// workloads and bandwidths, so a campaign cut short still covers every combination evenly.
pub fn build(
    config: &Config,
    replay: Option<&[(MigrationRow, Vec<RoundRow>)]>,
) -> Result<Vec<PlannedRun>, CampaignError> {
    if config.hypervisor.kind == HypervisorKind::Replay {
        let rows = replay.unwrap_or_default();
        let count = config.hypervisor.replay_count.unwrap_or(6);
        return Ok(replay_plan(rows, count));
    }
    let mut out = Vec::new();
    let bandwidths: Vec<(String, Option<u64>)> = if config.plan.bandwidths.is_empty() {
        vec![("default".into(), None)]
    } else {
        config
            .plan
            .bandwidths
            .iter()
            .map(|b| {
                let v = datasets::quantity::parse_rate_bytes_per_s(b)
                    .map_err(|e| CampaignError::Plan(format!("bandwidth \"{b}\": {e}")))?;
                Ok((b.replace('/', "p"), Some(v.round() as u64)))
            })
            .collect::<Result<_, CampaignError>>()?
    };
    for rep in 1..=config.plan.repetitions {
        for vm in &config.vms {
            let mem = datasets::quantity::parse_size_bytes(&vm.mem).map_err(|e| {
                CampaignError::Plan(format!("VM {}: mem \"{}\": {e}", vm.name, vm.mem))
            })?;
            for w in &config.plan.workloads {
                for (label, bw) in &bandwidths {
                    let id = safe_name(&format!("{}-{}-{}-r{}", vm.name, w, label, rep));
                    out.push(PlannedRun {
                        index: out.len(),
                        migration_id: id,
                        vm: vm.name.clone(),
                        vm_mem_bytes: mem.round() as u64,
                        workload: w.clone(),
                        bandwidth_bytes_per_s: *bw,
                        repetition: rep,
                        replay: None,
                    });
                }
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in &out {
        if !seen.insert(r.migration_id.clone()) {
            return Err(CampaignError::Plan(format!(
                "two planned migrations get the id `{}`: make VM names, workloads and bandwidths distinct",
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
    // Per workload, picks spread from its smallest to its largest V_mig: every dirtying
    // rate is covered (the gamma fit needs several) and so is the whole V_mig range.
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
            picks.push(g[g.len() - 1]);
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
            repetition: 1,
            replay: Some((row.clone(), rounds.clone())),
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
    }
}
