//! One execution on one process: send the request, relay events under the
//! limits, end on the result, the time limit or a stop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::process::{next_event, Process};
use crate::protocol::{self, Event as Wire, Request, StepRef};
use crate::redact::Redactor;
use crate::{Event, Execution, Outcome, Runtime, RuntimeError, Status};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Secret values a process remembers for masking (it serves one tenant,
/// whose secrets rarely change).
const MAX_SERVED_SECRETS: usize = 256;

/// How long the fd 1/2 output of a finished execution may trail its result
/// (a script that closed those fds leaves no end marks).
const OUTPUT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

fn rand_u64() -> u64 {
    rand::random()
}

/// A log line in the harness's format, for lines the worker itself adds.
fn worker_line(level: &str, text: &str) -> Event {
    Event::Log { level: level.to_string(), line: crate::log_line(level, text) }
}

/// What happens to the process after the execution.
enum Fate {
    Reuse,
    Discard,
    Stop,
}

pub(crate) async fn run(
    runtime: &Runtime,
    execution: &Execution,
    on_event: &mut (dyn FnMut(Event) + Send),
    stop: impl std::future::Future<Output = ()>,
) -> Result<Outcome, RuntimeError> {
    let host = &runtime.host;
    let config = &host.config;
    let script = &execution.script;
    let started = Instant::now();
    let (mut process, warm) = runtime.pool.acquire(host, script, &execution.tenant, execution.fresh).await?;
    process.serves = Some((execution.tenant.clone(), script.sha256.clone()));
    process.uses += 1;
    process.max_uses = execution.max_uses;
    // Inside the process's own directory: no other execution can reach it.
    // A package (a stack's calls, served like a long-running host) works in
    // its process's home: a directory per call would cost more than the call.
    let workdir = if script.package.is_some() { None } else { Some(process.workdir("exec-")?) };
    let workdir_path = workdir.as_ref().map(|w| w.path().to_path_buf()).unwrap_or_else(|| process.home.clone());
    // Unguessable, so a script writing to the protocol stream cannot forge
    // this execution's result.
    let id = format!("x{}-{:016x}", NEXT_ID.fetch_add(1, Ordering::Relaxed), rand_u64());
    let request = Request::Exec {
        v: protocol::VERSION,
        id: &id,
        step: StepRef::of(script),
        workdir: &workdir_path.to_string_lossy(),
        entry: &execution.entry,
        input: match &execution.raw_input {
            Some(raw) => protocol::Input::Raw(raw),
            None => protocol::Input::Value(&execution.input),
        },
        secrets: &execution.secrets,
    };
    for secret in &execution.secrets {
        if !process.served_secrets.contains(secret) && process.served_secrets.len() < MAX_SERVED_SECRETS {
            process.served_secrets.push(secret.clone());
        }
    }
    let mut secrets = execution.secrets.clone();
    secrets.extend(process.served_secrets.iter().filter(|s| !execution.secrets.contains(s)).cloned());
    let redactor = process.redactor(&secrets, &host.private_paths);
    let mut relay = Relay {
        on_event,
        redactor: &redactor,
        budget: execution.limits.max_log_bytes,
        truncated: false,
        end_mark: format!("\0junction-end:{id}"),
        ends_seen: [false; 2],
    };
    let mut outcome = Outcome {
        status: Status::Crashed,
        message: String::new(),
        data: None,
        error: None,
        kind: None,
        traceback: None,
        log_truncated: false,
        warm,
        duration: Default::default(),
    };
    // Bounded: a process whose stdout pipe is full (a leftover timer of an
    // earlier execution) could otherwise block the write for ever.
    let sent = match tokio::time::timeout(execution.limits.wall_time, process.send(&request)).await {
        Ok(r) => r,
        Err(_) => Err(RuntimeError::Crashed("the runtime process did not take the request".into())),
    };
    let fate = match sent {
        Err(e) => {
            outcome.error = Some(e.to_string());
            Fate::Discard
        }
        Ok(()) => {
            tokio::pin!(stop);
            let deadline = tokio::time::sleep(execution.limits.wall_time);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    event = next_event(&mut process.events) => match event {
                        Ok(Some(Wire::Log { id: Some(eid), level, line })) if eid == id => relay.log(level, &line),
                        Ok(Some(Wire::Progress { id: Some(eid), message })) if eid == id => {
                            let message = redactor.apply(&message);
                            (relay.on_event)(Event::Progress { message });
                        }
                        Ok(Some(Wire::Result { id: Some(eid), ok, message, data, error, kind, traceback, leftover, marks })) if eid == id => {
                            if !marks {
                                relay.ends_seen = [true; 2];
                            }
                            outcome.message = redactor.apply(message.as_deref().unwrap_or_default());
                            outcome.error = error.map(|e| redactor.apply(&e));
                            outcome.kind = kind.map(|k| redactor.apply(&k));
                            outcome.traceback = traceback.map(|t| redactor.apply(&t));
                            outcome.status = if ok { Status::Succeeded } else { Status::Failed };
                            if let Some(data) = data.filter(|d| !d.is_null()) {
                                let size = json_size(&data);
                                if size > execution.limits.max_data_bytes {
                                    let msg = format!(
                                        "saved data is {size} bytes; the limit is {} bytes",
                                        execution.limits.max_data_bytes
                                    );
                                    relay.own(worker_line("ERROR", &msg));
                                    outcome.status = Status::Failed;
                                    outcome.error = Some(msg);
                                } else {
                                    outcome.data = Some(data);
                                }
                            }
                            // A failed script may have left state behind, and
                            // a timer or handle left running would run into
                            // the next execution: a fresh process serves it.
                            if let Some(what) = &leftover {
                                tracing::debug!(script = %script.name, leftover = %what, "recycling a runtime process");
                            }
                            break if ok && !execution.fresh && leftover.is_none() { Fate::Reuse } else { Fate::Discard };
                        }
                        // Stray output of an earlier execution of this
                        // process (a timer that fired late): not ours.
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            outcome.error = Some(crash_message(&mut process, "the runtime process exited").await);
                            break Fate::Discard;
                        }
                        Err(e) => {
                            outcome.error = Some(crash_message(&mut process, &e.to_string()).await);
                            break Fate::Discard;
                        }
                    },
                    Some((level, line)) = process.output.recv() => relay.output(level, &line),
                    _ = &mut deadline => {
                        let msg = format!("time limit of {} s exceeded; the execution was ended", execution.limits.wall_time.as_secs_f64());
                        relay.own(worker_line("ERROR", &msg));
                        outcome.status = Status::TimedOut;
                        outcome.error = Some(msg);
                        break Fate::Discard;
                    }
                    _ = &mut stop => {
                        relay.own(worker_line("ERROR", "Job was stopped by user"));
                        outcome.status = Status::Stopped;
                        outcome.error = Some("stopped by user".into());
                        break Fate::Stop;
                    }
                }
            }
        }
    };
    // Lines the process wrote to fd 1 or 2 before its result travel on
    // other pipes than the result: the harness ends each with a mark, and
    // the log is complete when both marks are in.
    if matches!(fate, Fate::Reuse | Fate::Discard) && matches!(outcome.status, Status::Succeeded | Status::Failed) {
        let deadline = tokio::time::Instant::now() + OUTPUT_GRACE;
        while relay.ends_seen != [true; 2] {
            match tokio::time::timeout_at(deadline, process.output.recv()).await {
                Ok(Some((level, line))) => relay.output(level, &line),
                _ => break,
            }
        }
    }
    while let Ok((level, line)) = process.output.try_recv() {
        relay.output(level, &line);
    }
    // A process the script started (even one that left the group with
    // setsid) must not outlive the execution. Node's permission model lets
    // no script start one, so only Python's are counted.
    let fate = if matches!(fate, Fate::Reuse)
        && script.language == junction_core::step::Language::Python
        && process.uid.is_some()
        && process.count_processes().await > process.baseline
    {
        Fate::Discard
    } else {
        fate
    };
    outcome.error = outcome.error.map(|e| redactor.apply(&e));
    if let Some(err) = &outcome.error {
        if outcome.status == Status::Crashed {
            relay.own(worker_line("ERROR", err));
        }
    }
    match fate {
        Fate::Reuse => runtime.pool.release(host, process),
        Fate::Discard => process.kill().await,
        Fate::Stop => process.terminate(config.kill_grace).await,
    }
    drop(workdir);
    outcome.log_truncated = relay.truncated;
    outcome.duration = started.elapsed();
    Ok(outcome)
}

/// The bytes of `data` as JSON, without building the text.
fn json_size(data: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, data) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// What a dead process said last on stderr: read until the pipe closes
/// (briefly; the reader may still be forwarding its last lines).
async fn crash_message(process: &mut Process, what: &str) -> String {
    let mut msg = what.to_string();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
    while let Ok(Some((_, line))) = tokio::time::timeout_at(deadline, process.output.recv()).await {
        msg.push_str("\n  ");
        msg.push_str(&line);
    }
    msg
}

/// Passes events on, masking secrets and keeping the log within budget.
struct Relay<'a> {
    on_event: &'a mut (dyn FnMut(Event) + Send),
    redactor: &'a Redactor,
    budget: usize,
    truncated: bool,
    /// What the harness writes to fds 1 and 2 after an execution's last
    /// output (NUL, then the request id).
    end_mark: String,
    /// Whether the mark came on fd 1, on fd 2.
    ends_seen: [bool; 2],
}

impl Relay<'_> {
    /// A line of the script's: masked, and counted against the budget.
    fn log(&mut self, level: String, line: &str) {
        if self.truncated {
            return;
        }
        let line = self.redactor.apply(line);
        if line.len() > self.budget {
            self.truncated = true;
            (self.on_event)(worker_line("WARN", "log truncated: the execution's log size limit was reached"));
            return;
        }
        self.budget -= line.len();
        (self.on_event)(Event::Log { level, line });
    }

    /// A line the process wrote to fd 1 or 2 itself (not through the
    /// harness): a log line of that level.
    fn output(&mut self, level: &'static str, text: &str) {
        let text = match text.strip_suffix(self.end_mark.as_str()) {
            Some(before) => {
                self.ends_seen[usize::from(level == "ERROR")] = true;
                if before.is_empty() {
                    return;
                }
                before
            }
            None => text,
        };
        self.log(level.to_string(), &crate::log_line(level, text));
    }

    /// A line of the worker's own (time limit, stop, crash): always kept,
    /// masked too (a crash message quotes the script's output).
    fn own(&mut self, event: Event) {
        let event = match event {
            Event::Log { level, line } => Event::Log { level, line: self.redactor.apply(&line) },
            other => other,
        };
        (self.on_event)(event);
    }
}
