//! Where a run executes: this machine, or a Dask cluster. A choice of the run, never of the project: the
//! project file does not name it.

use serde::{Deserialize, Serialize};

/// Where a run executes; the runtime has one invoker for each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Executor {
    /// This machine: the runtime's local invoker (the worker pool, or a script standing in for it).
    #[default]
    Local,
    /// The Dask cluster whose scheduler is at this address (`tcp://host:port`).
    Dask { scheduler: String },
}

impl Executor {
    /// The Dask cluster whose scheduler is at `address`: `tcp://host:port`, or `host:port` (given the
    /// `tcp://`). Anything else is refused, saying what an address looks like.
    pub fn dask(address: &str) -> Result<Self, String> {
        let text = address.trim();
        let scheduler = if text.contains("://") {
            text.to_owned()
        } else {
            format!("tcp://{text}")
        };
        let rest = scheduler.split_once("://").map_or("", |(_, rest)| rest);
        match rest.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
                Ok(Self::Dask { scheduler })
            }
            _ => Err(format!(
                "{text:?} is not a Dask scheduler's address (tcp://HOST:PORT, such as \
                 tcp://127.0.0.1:8786)"
            )),
        }
    }

    /// The scheduler's address for a run on a Dask cluster; `None` on this machine. What the history
    /// keeps of where a run executed.
    pub fn cluster(&self) -> Option<&str> {
        match self {
            Self::Local => None,
            Self::Dask { scheduler } => Some(scheduler),
        }
    }

    /// The executor a history row names: `None` is this machine.
    pub fn from_cluster(cluster: Option<String>) -> Self {
        cluster.map_or(Self::Local, |scheduler| Self::Dask { scheduler })
    }
}

impl std::fmt::Display for Executor {
    /// As a run's header says where it ran.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local => f.write_str("this machine"),
            Self::Dask { scheduler } => write!(f, "the Dask cluster at {scheduler}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduler_address_is_host_and_port_with_tcp_by_default() {
        let dask = |scheduler: &str| Executor::Dask {
            scheduler: scheduler.to_owned(),
        };
        assert_eq!(
            Executor::dask("tcp://10.0.0.5:8786"),
            Ok(dask("tcp://10.0.0.5:8786"))
        );
        assert_eq!(
            Executor::dask(" 127.0.0.1:8786 "),
            Ok(dask("tcp://127.0.0.1:8786"))
        );
        assert_eq!(
            Executor::dask("tls://sched:8786"),
            Ok(dask("tls://sched:8786"))
        );
        for bad in [
            "",
            "8786",
            "tcp://host",
            "tcp://:8786",
            "host:port",
            "host:0",
            "host:99999",
        ] {
            let error = Executor::dask(bad).unwrap_err();
            assert!(
                error.contains("is not a Dask scheduler's address"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn an_executor_reads_back_from_the_cluster_the_history_keeps() {
        let dask = Executor::Dask {
            scheduler: "tcp://10.0.0.5:8786".to_owned(),
        };
        assert_eq!(dask.cluster(), Some("tcp://10.0.0.5:8786"));
        assert_eq!(
            Executor::from_cluster(dask.cluster().map(str::to_owned)),
            dask
        );
        assert_eq!(Executor::from_cluster(None), Executor::Local);
        assert_eq!(dask.to_string(), "the Dask cluster at tcp://10.0.0.5:8786");
        assert_eq!(Executor::Local.to_string(), "this machine");
    }
}
