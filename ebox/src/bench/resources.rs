//! What the processes and the machine used during a run, from `/proc`: CPU time per process
//! (`/proc/PID/stat`), peak resident memory (`VmHWM` in `/proc/PID/status`), the machine's CPU
//! (`/proc/stat`) and its disks' busy time (`/proc/diskstats`). Linux only; elsewhere the
//! figures are absent.

use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Instant;

/// Clock ticks per second of `/proc`'s CPU times (`getconf CLK_TCK`, 100 on Linux).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User and system CPU ticks of a process so far.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count fields after its end.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the line (utime, stime) are the 12th and 13th after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The largest resident set a process had, in bytes (`VmHWM`).
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Processes whose command name (`/proc/PID/comm`) is `name`.
pub fn processes_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .collect()
}

/// `/proc/loadavg`'s three load averages.
pub fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The machine's CPU ticks: busy (not idle, not waiting for I/O), waiting for I/O, serving
/// interrupts (loopback networking among them: no process is charged for it) or taken by the
/// hypervisor (steal), in all.
#[derive(Debug, Clone, Copy, Default)]
struct MachineTicks {
    busy: u64,
    iowait: u64,
    interrupts: u64,
    total: u64,
}

fn machine_ticks() -> Option<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest times are inside user).
    let total: u64 = values.iter().take(8).sum();
    let idle = *values.get(3)?;
    let iowait = *values.get(4)?;
    let interrupts = values.get(5..8)?.iter().sum();
    Some(MachineTicks {
        busy: total - idle - iowait,
        iowait,
        interrupts,
        total,
    })
}

/// Milliseconds each whole disk spent doing I/O so far (`/proc/diskstats`' 13th field), for
/// the devices of `/sys/block` that are not loop or RAM devices.
fn disk_busy_ms() -> HashMap<String, u64> {
    let Ok(text) = std::fs::read_to_string("/proc/diskstats") else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let name = *fields.get(2)?;
            let whole = std::path::Path::new("/sys/block").join(name).exists();
            if !whole || name.starts_with("loop") || name.starts_with("ram") {
                return None;
            }
            Some((name.to_owned(), fields.get(12)?.parse().ok()?))
        })
        .collect()
}

/// The processes a run watches, each under a label (several processes may share one).
#[derive(Debug, Clone, Default)]
pub struct Watched(Vec<(String, u32)>);

impl Watched {
    pub fn add(&mut self, label: &str, pid: u32) {
        self.0.push((label.to_owned(), pid));
    }

    /// This process, the broker's and PostgreSQL's, the latter in three parts: the backends
    /// serving the bench's database, those serving other databases (other work on the
    /// machine), and PostgreSQL's own processes (WAL writer, checkpointer, autovacuum…), which
    /// serve every database.
    pub async fn services(&mut self, pool: &PgPool) {
        self.add("bench", std::process::id());
        for pid in processes_named("beam.smp") {
            self.add("rabbitmq", pid);
        }
        let backends: Vec<(i32, bool)> = sqlx::query_as(
            "SELECT pid, datname = current_database() FROM pg_stat_activity WHERE datname IS NOT NULL",
        )
        .fetch_all(pool)
        .await
        .unwrap_or_default();
        for pid in processes_named("postgres") {
            let label = match backends.iter().find(|&&(p, _)| u32::try_from(p) == Ok(pid)) {
                Some((_, true)) => "postgres (bench database)",
                Some((_, false)) => "postgres (other databases)",
                None => "postgres (its own processes)",
            };
            self.add(label, pid);
        }
    }
}

/// The CPU times of the watched processes, of the machine and of the disks, at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    processes: HashMap<u32, u64>,
    machine: Option<MachineTicks>,
    disks: HashMap<String, u64>,
}

impl Snapshot {
    pub fn take(watched: &Watched) -> Self {
        Self {
            at: Instant::now(),
            processes: watched
                .0
                .iter()
                .filter_map(|&(_, pid)| Some((pid, cpu_ticks(pid)?)))
                .collect(),
            machine: machine_ticks(),
            disks: disk_busy_ms(),
        }
    }
}

/// What a run used between two snapshots.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// Per label, in the order first watched: percent of one core.
    pub cpu: Vec<(String, f64)>,
    /// Percent of all cores busy, of them waiting for I/O, and busy outside the watched
    /// processes (other work on the machine, the kernel's own threads).
    pub machine_busy: Option<f64>,
    pub machine_iowait: Option<f64>,
    /// Percent of all cores serving interrupts or stolen by the hypervisor (part of busy).
    pub machine_interrupts: Option<f64>,
    pub unwatched: Option<f64>,
    /// The busiest disk and the percent of the time it was busy.
    pub busiest_disk: Option<(String, f64)>,
}

impl Usage {
    /// `watched` as it was at the end: a process that appeared in between (a new database
    /// backend) counts from zero.
    pub fn between(before: &Snapshot, after: &Snapshot, watched: &Watched) -> Self {
        let seconds = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
        let ticks = clock_ticks();
        let mut cpu: Vec<(String, f64)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (label, pid) in &watched.0 {
            if !seen.insert(*pid) {
                continue;
            }
            let at = |snapshot: &Snapshot| snapshot.processes.get(pid).copied().unwrap_or(0);
            let used = at(after).saturating_sub(at(before));
            let percent = used as f64 / ticks / seconds * 100.0;
            match cpu.iter_mut().find(|(l, _)| l == label) {
                Some((_, total)) => *total += percent,
                None => cpu.push((label.clone(), percent)),
            }
        }
        let machine = match (before.machine, after.machine) {
            (Some(b), Some(a)) if a.total > b.total => {
                let share = |x: u64, y: u64| {
                    x.saturating_sub(y) as f64 / (a.total - b.total) as f64 * 100.0
                };
                Some((
                    share(a.busy, b.busy),
                    share(a.iowait, b.iowait),
                    share(a.interrupts, b.interrupts),
                ))
            }
            _ => None,
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let watched_cores: f64 = cpu.iter().map(|(_, p)| p).sum::<f64>() / cores;
        let busiest_disk = after
            .disks
            .iter()
            .filter_map(|(name, &ms)| {
                let was = *before.disks.get(name)?;
                Some((
                    name.clone(),
                    ms.saturating_sub(was) as f64 / (seconds * 1000.0) * 100.0,
                ))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        Self {
            cpu,
            machine_busy: machine.map(|m| m.0),
            machine_iowait: machine.map(|m| m.1),
            machine_interrupts: machine.map(|m| m.2),
            unwatched: machine.map(|m| (m.0 - watched_cores).max(0.0) * cores),
            busiest_disk,
        }
    }

    /// What saturated, in a sentence: the CPU when the cores were nearly all busy (with the
    /// largest users), else a disk nearly always busy, else neither.
    pub fn saturated(&self) -> String {
        let mut users: Vec<&(String, f64)> = self.cpu.iter().collect();
        users.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top = users
            .iter()
            .take(3)
            .map(|(label, p)| format!("{label} {p:.0} %"))
            .collect::<Vec<_>>()
            .join(", ");
        match (self.machine_busy, &self.busiest_disk) {
            (Some(busy), _) if busy >= 90.0 => {
                format!(
                    "CPU: the cores were {busy:.0} % busy (largest users, % of one core: {top})"
                )
            }
            (_, Some((disk, util))) if *util >= 90.0 => {
                format!("disk: {disk} busy {util:.0} % of the time")
            }
            (Some(busy), _) => format!(
                "neither CPU ({busy:.0} % busy) nor disk: the stages wait on round trips (largest CPU users, % of one core: {top})"
            ),
            (None, _) => "unknown (no /proc)".to_owned(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "cpuPercentOfOneCore": self.cpu.iter()
                .map(|(label, p)| (label.clone(), serde_json::json!(round1(*p))))
                .collect::<serde_json::Map<_, _>>(),
            "machineBusyPercent": self.machine_busy.map(round1),
            "machineIowaitPercent": self.machine_iowait.map(round1),
            "machineInterruptsPercent": self.machine_interrupts.map(round1),
            "unwatchedPercentOfOneCore": self.unwatched.map(round1),
            "busiestDisk": self.busiest_disk.as_ref().map(|(name, util)| serde_json::json!({
                "device": name, "busyPercent": round1(*util)
            })),
            "saturated": self.saturated(),
        })
    }
}

pub fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_a_peak_resident_set() {
        let pid = std::process::id();
        assert!(cpu_ticks(pid).is_some());
        assert!(peak_rss(pid).is_some_and(|bytes| bytes > 0));
    }
}
