//! A Dask cluster on this machine: a `dask scheduler` and `dask worker`s on 127.0.0.1 with free ports
//! (the dashboards' too: their default port would collide), from the Python Braid runs blocks with, as
//! Dask workers must run its minor version. `braid cluster` starts one for people to try a run on a
//! cluster; the scale-out tests and benchmark start their own. Each process logs into the cluster's
//! folder; all of them are stopped when the cluster is dropped (SIGTERM, which Dask ends cleanly on,
//! then SIGKILL), so none outlives what started it.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the scheduler may take to say its address, and the workers to join it.
const SCHEDULER_WITHIN: Duration = Duration::from_secs(30);
const WORKERS_WITHIN: Duration = Duration::from_mins(1);
/// How long a process may take to end on SIGTERM before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// What to start.
#[derive(Clone, Debug)]
pub struct LocalClusterOptions {
    pub workers: u32,
    /// Threads per worker.
    pub threads: u32,
    /// Each worker under a nanny, which starts a fresh worker process when one dies (Dask's default).
    pub nanny: bool,
    /// The scheduler's port; 0 for a free one.
    pub port: u16,
    /// Environment variables for the workers.
    pub worker_env: Vec<(OsString, OsString)>,
}

impl Default for LocalClusterOptions {
    /// Two single-threaded workers with their nannies, on a free port.
    fn default() -> Self {
        Self {
            workers: 2,
            threads: 1,
            nanny: true,
            port: 0,
            worker_env: Vec::new(),
        }
    }
}

/// A running local cluster, its workers joined.
pub struct LocalCluster {
    address: String,
    /// The scheduler first, then the workers.
    processes: Vec<Child>,
    dir: tempfile::TempDir,
}

impl LocalCluster {
    /// Starts the scheduler and the workers and returns once every worker has joined; an error says
    /// what went wrong, with the log of the process that failed.
    pub fn start(options: &LocalClusterOptions) -> Result<Self, String> {
        let python = crate::runtime::environment::python_executable();
        let has_dask = Command::new(&python)
            .args(["-c", "import distributed"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_dask {
            return Err(format!(
                "the Python Braid runs blocks with ({python}) has no Dask: install it with\n  \
                 {python} -m pip install 'dask[distributed]'",
                python = python.display()
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("braid-cluster-")
            .tempdir()
            .map_err(|e| format!("can't make a folder for the cluster: {e}"))?;
        let mut cluster = Self {
            address: String::new(),
            processes: Vec::new(),
            dir,
        };
        let scheduler_file = cluster.dir.path().join("scheduler.json");
        let scheduler = cluster.spawn(
            &python,
            "scheduler.log",
            &[
                "-m".into(),
                "distributed.cli.dask_scheduler".into(),
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                options.port.to_string().into(),
                "--dashboard-address".into(),
                "127.0.0.1:0".into(),
                "--scheduler-file".into(),
                scheduler_file.clone().into(),
            ],
            &[],
        )?;
        cluster.processes.push(scheduler);
        let deadline = Instant::now() + SCHEDULER_WITHIN;
        cluster.address = loop {
            if let Some(address) = std::fs::read(&scheduler_file)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
                .and_then(|v| v["address"].as_str().map(str::to_owned))
            {
                break address;
            }
            let ended = cluster.processes[0].try_wait().ok().flatten().is_some();
            if ended || Instant::now() > deadline {
                return Err(format!(
                    "the Dask scheduler did not start:\n{}",
                    cluster.log("scheduler.log")
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        for n in 1..=options.workers {
            let mut args: Vec<OsString> = vec![
                "-m".into(),
                "distributed.cli.dask_worker".into(),
                cluster.address.clone().into(),
                "--nthreads".into(),
                options.threads.to_string().into(),
                "--host".into(),
                "127.0.0.1".into(),
                "--dashboard-address".into(),
                "127.0.0.1:0".into(),
                "--local-directory".into(),
                cluster.dir.path().join(format!("worker-{n}")).into(),
            ];
            if !options.nanny {
                args.push("--no-nanny".into());
            }
            let worker = cluster.spawn(
                &python,
                &format!("worker-{n}.log"),
                &args,
                &options.worker_env,
            )?;
            cluster.processes.push(worker);
        }
        cluster.wait_for_workers(&python, options.workers)?;
        Ok(cluster)
    }

    /// The scheduler's address, `tcp://127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The folder the processes log into (`scheduler.log`, `worker-N.log`).
    pub fn logs(&self) -> &Path {
        self.dir.path()
    }

    /// The scheduler's process id.
    pub fn scheduler_pid(&self) -> u32 {
        self.processes[0].id()
    }

    fn spawn(
        &self,
        python: &Path,
        log: &str,
        args: &[OsString],
        env: &[(OsString, OsString)],
    ) -> Result<Child, String> {
        let log = File::create(self.dir.path().join(log))
            .map_err(|e| format!("can't write the cluster's log: {e}"))?;
        Command::new(python)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("can't start {}: {e}", python.display()))
    }

    /// Asks the scheduler, as a Dask client, until `workers` have joined it.
    fn wait_for_workers(&self, python: &Path, workers: u32) -> Result<(), String> {
        let script = "import sys\nfrom distributed import Client\n\
                      with Client(sys.argv[1], timeout=30) as client:\n    \
                          client.wait_for_workers(int(sys.argv[2]), timeout=float(sys.argv[3]))\n";
        let joined = Command::new(python)
            .args(["-c", script, &self.address, &workers.to_string()])
            .arg(WORKERS_WITHIN.as_secs().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if joined {
            return Ok(());
        }
        let mut logs = String::new();
        for n in 1..=workers {
            let log = self.log(&format!("worker-{n}.log"));
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(10)..];
            let _ = writeln!(logs, "worker {n}:\n{}", tail.join("\n"));
        }
        Err(format!(
            "the Dask workers did not join the scheduler at {}:\n{logs}",
            self.address
        ))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // The workers first, then the scheduler: a worker whose scheduler ended first spends seconds
        // trying to reach it before it ends.
        if let Some((scheduler, workers)) = self.processes.split_first_mut() {
            stop(workers);
            stop(std::slice::from_mut(scheduler));
        }
    }
}

/// Sends each process SIGTERM, then waits for them all, killing any still there after [`STOP_WITHIN`].
fn stop(processes: &mut [Child]) {
    for process in processes.iter() {
        if let Some(pid) = rustix::process::Pid::from_raw(process.id().cast_signed()) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    let deadline = Instant::now() + STOP_WITHIN;
    for process in processes {
        while process.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = process.kill();
                let _ = process.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
