//! Serve mode: the open project served as `braid serve` serves it, over the editor's runtime, so that
//! every request, timer firing and queue batch is a run the runtime's events bring into Block
//! Executions as it happens. What it serves is the project as it was when serving started.
//!
//! Starting waits for the project's code to load (its libraries to install, first), so it happens on
//! a thread of its own and the window goes on drawing; the frame picks up its answer.

use std::sync::Arc;
use std::sync::mpsc;

use super::{App, NoticeLevel};
use crate::model::BlockId;
use crate::serve::{EndpointStatus, NotServed, QueueStatus, Served, Status, TimerStatus};

/// The project served, or being started.
pub(super) enum Serving {
    Starting {
        answer: mpsc::Receiver<Result<Served, NotServed>>,
    },
    On {
        served: Box<Served>,
        /// As of this frame.
        status: Status,
    },
}

impl App {
    /// Serving, or starting to.
    pub fn is_serving(&self) -> bool {
        self.serving.is_some()
    }

    /// Serving has been asked for and the code is loading.
    pub fn serve_starting(&self) -> bool {
        matches!(self.serving, Some(Serving::Starting { .. }))
    }

    /// Where the project is served (`http://127.0.0.1:7700`), once it is.
    pub fn serving_url(&self) -> Option<&str> {
        match &self.serving {
            Some(Serving::On { served, .. }) => Some(served.base_url()),
            _ => None,
        }
    }

    /// What serving looks like as of this frame (endpoints' request counts, timers' next fire, queues'
    /// depths), once the project is served.
    pub fn serve_status(&self) -> Option<&Status> {
        match &self.serving {
            Some(Serving::On { status, .. }) => Some(status),
            _ => None,
        }
    }

    /// An API Endpoint block's URL and request count while served.
    pub fn served_endpoint(&self, block: &BlockId) -> Option<&EndpointStatus> {
        self.serve_status()?
            .endpoints
            .iter()
            .find(|e| e.block == *block)
    }

    /// A Timer block's next fire while served.
    pub fn served_timer(&self, block: &BlockId) -> Option<&TimerStatus> {
        self.serve_status()?
            .timers
            .iter()
            .find(|t| t.block == *block)
    }

    /// A Queue block's depth while served.
    pub fn served_queue(&self, block: &BlockId) -> Option<&QueueStatus> {
        self.serve_status()?
            .queues
            .iter()
            .find(|q| q.block == *block)
    }

    pub(super) fn start_serving(&mut self, listen: &str, now_secs: f64) {
        if self.serving.is_some() {
            return self.notify(
                NoticeLevel::Info,
                "The project is served already.",
                now_secs,
            );
        }
        let Some(runtime) = &self.runtime else {
            return self.notify(
                NoticeLevel::Error,
                "The project can't be served: the runtime did not start.",
                now_secs,
            );
        };
        let address = match crate::serve::listen_address(listen) {
            Ok(address) => address,
            Err(message) => {
                return self.notify(
                    NoticeLevel::Error,
                    format!("The project can't be served: {message}"),
                    now_secs,
                );
            }
        };
        // The problems that stop serving are known before anything loads: said at once.
        let problems = crate::serve::problems(&self.project, None);
        if !problems.is_empty() {
            return self.not_served(&problems, now_secs);
        }
        let log: crate::serve::Log =
            Arc::new(|line: &str| tracing::info!(target: "braid::serve", "{line}"));
        let mut options = crate::serve::Options::new(address, log);
        options.env = self.run_env();
        let requester = runtime.sender.requester();
        listen.clone_into(&mut self.serve_listen);
        let project = self.project.clone();
        let path = self.path.clone();
        let (reply, answer) = mpsc::channel();
        let started = std::thread::Builder::new()
            .name("braid-serve-start".to_owned())
            .spawn(move || {
                let served = crate::serve::start(&project, path.as_deref(), &requester, &options);
                // Nobody waits any more (serving was stopped while it started): it stops as it drops.
                let _ = reply.send(served);
            });
        match started {
            Ok(_) => self.serving = Some(Serving::Starting { answer }),
            Err(e) => self.notify(
                NoticeLevel::Error,
                format!("The project can't be served: {e}"),
                now_secs,
            ),
        }
    }

    /// Picks up a start's answer, and the served project's status for this frame.
    pub(super) fn poll_serving(&mut self, now_secs: f64) {
        match &mut self.serving {
            None => {}
            Some(Serving::On { served, status }) => *status = served.status(),
            Some(Serving::Starting { answer }) => match answer.try_recv() {
                Err(mpsc::TryRecvError::Empty) => {}
                Ok(Ok(served)) => {
                    let status = served.status();
                    let url = served.base_url().to_owned();
                    self.serving = Some(Serving::On {
                        served: Box::new(served),
                        status,
                    });
                    // Its runs are recorded: the panel reads them from the history once they end.
                    if self.executions.history().is_none() && self.path.is_some() {
                        self.open_history(true, now_secs);
                    }
                    self.notify(
                        NoticeLevel::Info,
                        format!("Serving at {url}: each request is a run in Block Executions."),
                        now_secs,
                    );
                }
                Ok(Err(NotServed(lines))) => {
                    self.serving = None;
                    self.not_served(&lines, now_secs);
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.serving = None;
                    self.not_served(&["its start stopped unexpectedly".to_owned()], now_secs);
                }
            },
        }
    }

    fn not_served(&mut self, problems: &[String], now_secs: f64) {
        self.notify(
            NoticeLevel::Error,
            format!("The project can't be served: {}", problems.join("; ")),
            now_secs,
        );
    }

    /// Stops serving: the runs going on end as cancelled (a queue batch's messages go back, ready).
    pub(super) fn stop_serving(&mut self, now_secs: f64) {
        match self.serving.take() {
            // A start under way ends on its thread: what it started stops as its answer drops.
            None | Some(Serving::Starting { .. }) => {}
            Some(Serving::On { served, .. }) => {
                served.stop();
                self.notify(NoticeLevel::Info, "Serving stopped.", now_secs);
            }
        }
    }
}
