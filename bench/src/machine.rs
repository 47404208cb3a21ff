//! The machine, the commit and the command of a run, printed with every figure.

use std::process::Command;

/// What a run was measured on.
#[derive(Clone, Debug)]
pub struct Machine {
    /// Logical cores.
    pub cores: usize,
    /// The CPU model.
    pub cpu: String,
    /// Memory in GiB.
    pub memory_gib: f64,
    /// The operating system.
    pub system: String,
    /// The commit (with `-dirty` when the work tree has changes).
    pub commit: String,
    /// The command of the run.
    pub command: String,
}

impl Machine {
    /// Reads the machine's description; unknown parts say so.
    pub fn read(command: &str) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split(':').nth(1))
            .map_or_else(|| "unknown CPU".to_owned(), |model| model.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find(|line| line.starts_with("MemTotal:"))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0.0);
        let system = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("PRETTY_NAME="))
            .map_or_else(
                || "unknown system".to_owned(),
                |name| name.trim_matches('"').to_owned(),
            );
        Self {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            cpu,
            memory_gib: memory_kib / 1024.0 / 1024.0,
            system,
            commit: commit(),
            command: command.to_owned(),
        }
    }

    /// One line per fact.
    pub fn describe(&self) -> String {
        format!(
            "machine: {} cores, {}, {:.0} GiB, {}\ncommit:  {}\ncommand: {}",
            self.cores, self.cpu, self.memory_gib, self.system, self.commit, self.command
        )
    }
}

fn commit() -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    match run(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|status| !status.is_empty());
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            }
        }
        None => "unknown commit".to_owned(),
    }
}
