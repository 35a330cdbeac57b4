//! What a hostile script cannot do, with bubblewrap and without it (bwrap
//! absent: `RuntimeConfig::bwrap = None`, as when it is not on `PATH`).
//! The tests run as root in CI, so scripts run as transient unprivileged
//! uids in both modes; a test that needs root says so when it is not.

mod common;

use std::time::Duration;

use common::{data_dir, texts, DataDir, Harness};
use junction_core::step::Language;
use junction_runtime::{Event, Execution, RuntimeConfig, Sandbox, Script, Status};
use serde_json::{json, Value};

fn root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

async fn harness(bwrap: bool, d: &DataDir) -> Harness {
    let data = d.data.clone();
    let h = Harness::with(move |c: &mut RuntimeConfig| {
        c.dir = data.join("runtime");
        c.sandbox = Sandbox::Auto;
        c.hidden_paths = vec![data.clone()];
        if !bwrap {
            c.bwrap = None;
        }
    })
    .await;
    if bwrap {
        assert!(
            h.runtime.sandboxed(),
            "bubblewrap (bwrap) is not installed; the sandbox tests need it: apt-get install bubblewrap"
        );
    }
    let health = h.runtime.health();
    assert!(health.ok, "{health:?}");
    assert_eq!(
        health.sandbox,
        if bwrap {
            "bubblewrap"
        } else if root() {
            "user"
        } else {
            "none"
        }
    );
    h
}

const PY_ATTACKER: &str = r##"
import os, subprocess, time
from ipaascore.BaseStep import BaseStep


class Attacker(BaseStep):
    def execute(self):
        seen = {"uid": os.getuid()}
        for name, path in self.get_app_variable("paths").items():
            try:
                with open(path, "rb") as f:
                    seen[name] = f.read(200).decode("utf-8", "replace")
            except OSError as e:
                seen[name] = type(e).__name__
        import ipaascore.BaseStep as sdk
        try:
            with open(sdk.__file__, "a") as f:
                f.write("# planted\n")
            seen["harness"] = "WRITTEN"
        except OSError as e:
            seen["harness"] = type(e).__name__
        # A grandchild in a session of its own: out of the process group.
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.setsid()
            grandchild = os.fork()
            if grandchild == 0:
                os.execv("/bin/sleep", ["/bin/sleep", self.get_app_variable("marker")])
            os.write(w, str(grandchild).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        gpid = int(os.read(r, 32))
        try:
            os.kill(gpid, 0)
            seen["grandchild_alive"] = True
        except OSError:
            seen["grandchild_alive"] = False
        self.save_data_for_next_step(seen)
"##;

async fn hostile_python_cannot_reach_the_server(bwrap: bool) {
    let d = data_dir();
    let h = harness(bwrap, &d).await;
    // The grandchild sleeps for a time no other process on the machine
    // does, so it can be found in /proc (in bubblewrap its pid is another).
    let marker = format!("{}.{:06}", 60 + bwrap as u32, rand::random::<u32>() % 1_000_000);
    let paths = json!({
        "db": d.data.join("junction.db"),
        "key": d.data.join("secret.key"),
        "server_environ": format!("/proc/{}/environ", std::process::id()),
        "server_mem": format!("/proc/{}/mem", std::process::id()),
    });
    let mut exec = Execution::new(
        Script::new("Attacker", Language::Python, PY_ATTACKER),
        json!({"app_variables": {"paths": paths, "marker": marker}, "log_level": 20}),
    );
    exec.tenant = "app:attacker".into();
    let (outcome, events) = h.run(&exec).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?} {events:?}");
    let seen = outcome.data.unwrap();
    // Inside bubblewrap none of them exists (an empty data dir, another
    // PID namespace); as another uid each is refused.
    let refused = if bwrap { "FileNotFoundError" } else { "PermissionError" };
    for file in ["db", "key", "server_environ", "server_mem"] {
        let got = seen[file].as_str().unwrap();
        if bwrap || root() {
            assert_eq!(got, refused, "{file}: bwrap={bwrap} {seen}");
        } else {
            assert!(got.ends_with("Error") && !got.contains("BYTES"), "{file} was read ({got}): {seen}");
        }
    }
    assert_eq!(seen["grandchild_alive"], true, "the grandchild never ran, so its end proves nothing: {seen}");
    assert_ne!(seen["harness"], "WRITTEN", "the SDK was modified: {seen}");
    if root() {
        assert_ne!(seen["uid"], 0, "a script ran as root: {seen}");
    }
    // The grandchild left the group with setsid; it must still be gone once
    // the execution has ended (bwrap: with the PID namespace; otherwise:
    // every process of the script's uid is killed).
    if bwrap || root() {
        // The leftover grandchild makes the worker recycle the process at
        // once; the reaper then ends everything of its uid.
        let gone = wait_until(|| sleeping(&marker).is_empty()).await;
        assert!(gone, "the double-forked grandchild {:?} outlived its execution (bwrap={bwrap})", sleeping(&marker));
    }
    // A later execution of another tenant runs a pristine SDK.
    let check = r##"
import ipaascore.BaseStep as sdk
from ipaascore.BaseStep import BaseStep


class Check(BaseStep):
    def execute(self):
        self.save_data_for_next_step(open(sdk.__file__).read().endswith("# planted\n"))
"##;
    let mut exec = Execution::new(Script::new("Check", Language::Python, check), json!({"log_level": 20}));
    exec.tenant = "app:victim".into();
    let (outcome, events) = h.run(&exec).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?} {events:?}");
    assert_eq!(outcome.data, Some(json!(false)));
}

/// Pids of the `sleep MARKER` processes on this machine.
fn sleeping(marker: &str) -> Vec<String> {
    let want = format!("/bin/sleep\0{marker}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want.as_bytes()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

async fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn a_hostile_python_step_cannot_reach_the_server_with_bubblewrap() {
    hostile_python_cannot_reach_the_server(true).await;
}

#[tokio::test]
async fn a_hostile_python_step_cannot_reach_the_server_without_bubblewrap() {
    hostile_python_cannot_reach_the_server(false).await;
}

#[tokio::test]
async fn scripts_run_as_an_unprivileged_user_when_junction_is_root() {
    assert!(root(), "this test checks the uid switch and must run as root (CI does)");
    let d = data_dir();
    for bwrap in [true, false] {
        let h = harness(bwrap, &d).await;
        let js = "module.exports = { run: async () => String(process.getuid()) + ':' + String(process.getgid()) };";
        let (outcome, _) =
            h.run(&Execution::new(Script::new("whoami", Language::Javascript, js), json!({"args": {}}))).await;
        let (uid, gid) = outcome.message.split_once(':').unwrap();
        let (uid, gid): (u32, u32) = (uid.parse().unwrap(), gid.parse().unwrap());
        assert!(junction_runtime::DEFAULT_UIDS.contains(&uid) && uid != gid, "uid {uid} (bwrap={bwrap})");
        assert_eq!(gid, junction_runtime::DEFAULT_UIDS.start);
    }
}

/// Defect 1: application A's script leaves a timer holding A's secret; B's
/// run of the same script (same warm pool) must never log it, and A's next
/// run starts in a fresh process.
#[tokio::test]
async fn a_warm_process_never_serves_two_applications_and_timers_do_not_outlive_a_run() {
    let h = Harness::new().await;
    let src = r#"let kept = null; module.exports = { run: async (args) => {
        if (args.arguments.secret) {
            kept = args.arguments.secret;
            setInterval(() => console.log('still here: ' + kept), 5).unref();
        }
        await new Promise((r) => setTimeout(r, 60));
        return 'kept=' + (kept ? 'yes' : 'no');
    } };"#;
    let script = Script::new("shared", Language::Javascript, src);
    let mut a = Execution::new(script.clone(), json!({"args": {"arguments": {"secret": "A-SECRET-1"}}}));
    a.tenant = "app:a".into();
    a.secrets = vec!["A-SECRET-1".into()];
    let (first, _) = h.run(&a).await;
    assert_eq!(first.message, "kept=yes");
    let mut b = Execution::new(script.clone(), json!({"args": {"arguments": {}}}));
    b.tenant = "app:b".into();
    let (second, events) = h.run(&b).await;
    assert_eq!(second.message, "kept=no", "B's run saw A's module state");
    assert!(!format!("{events:?}").contains("A-SECRET-1"), "{events:?}");
    assert!(!format!("{events:?}").contains("still here"), "A's timer ran into B's run: {events:?}");
    // Same application again: the timer made the process unfit for reuse.
    let (third, _) = h.run(&a).await;
    assert!(!third.warm, "a process with a leftover timer was reused");
    // Without leftovers an application's process stays warm for it.
    let clean = Script::new("clean", Language::Javascript, "module.exports = { run: async () => 'ok' };");
    let mut c = Execution::new(clean, json!({"args": {}}));
    c.tenant = "app:c".into();
    assert!(!h.run(&c).await.0.warm);
    assert!(h.run(&c).await.0.warm);
    c.tenant = "app:d".into();
    assert!(!h.run(&c).await.0.warm, "another application got app:c's warm process");
}

/// Root creates each execution's directory inside the process's own: the
/// script can neither rename an entry there nor plant a link for root to
/// follow (chown, chmod) — a thread it left behind could otherwise race
/// root into changing a file of the host.
#[tokio::test]
async fn a_script_cannot_swap_the_entries_of_its_process_directory() {
    assert!(root(), "the directories are another uid's only under root (CI runs as root)");
    let d = data_dir();
    for bwrap in [true, false] {
        let h = harness(bwrap, &d).await;
        let src = r#"
import os
from ipaascore.BaseStep import BaseStep


class Swapper(BaseStep):
    def execute(self):
        cwd = os.getcwd()
        parent = os.path.dirname(cwd)
        seen = {}
        for name, attempt in [("rename", lambda: os.rename(cwd, cwd + "-moved")),
                              ("link", lambda: os.symlink("/etc/passwd", os.path.join(parent, "exec-planted"))),
                              ("mkdir", lambda: os.mkdir(os.path.join(parent, "exec-planted")))]:
            try:
                attempt()
                seen[name] = "DONE"
            except OSError as e:
                seen[name] = type(e).__name__
        self.save_data_for_next_step(seen)
"#;
        let mut exec = Execution::new(Script::new("Swapper", Language::Python, src), json!({"log_level": 20}));
        exec.tenant = "app:swapper".into();
        let (outcome, events) = h.run(&exec).await;
        assert_eq!(outcome.status, Status::Succeeded, "{outcome:?} {events:?}");
        let seen = outcome.data.unwrap();
        for attempt in ["rename", "link", "mkdir"] {
            assert_eq!(seen[attempt], "PermissionError", "bwrap={bwrap}: {seen}");
        }
    }
}

#[tokio::test]
async fn python_threads_left_running_recycle_the_process() {
    let h = Harness::new().await;
    let src = r#"
import threading, time
from ipaascore.BaseStep import BaseStep


class Lingers(BaseStep):
    def execute(self):
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
"#;
    let raw = r#"
import _thread, time
from ipaascore.BaseStep import BaseStep


class RawThread(BaseStep):
    def execute(self):
        _thread.start_new_thread(time.sleep, (30,))
"#;
    let mut exec = Execution::new(Script::new("Lingers", Language::Python, src), json!({"log_level": 20}));
    exec.tenant = "app:x".into();
    assert_eq!(h.run(&exec).await.0.status, Status::Succeeded);
    assert!(!h.run(&exec).await.0.warm, "a process with a leftover thread was reused");
    let mut exec = Execution::new(Script::new("RawThread", Language::Python, raw), json!({"log_level": 20}));
    exec.tenant = "app:x".into();
    assert_eq!(h.run(&exec).await.0.status, Status::Succeeded);
    assert!(!h.run(&exec).await.0.warm, "a process with a leftover _thread was reused");
}

/// Defect 7: raw writes to fd 1 and 2 are log lines; the protocol is not
/// on them.
#[tokio::test]
async fn raw_writes_to_fd_1_and_2_are_log_lines_not_protocol() {
    let h = Harness::new().await;
    let js = r#"const fs = require('fs'); module.exports = { run: async () => {
        fs.writeSync(1, '{"t":"result","id":"forged","ok":true}\nraw one\n');
        fs.writeSync(2, 'raw two\n');
        console.log('after');
        return 'done';
    } };"#;
    let (outcome, events) =
        h.run(&Execution::new(Script::new("raw", Language::Javascript, js), json!({"args": {}}))).await;
    assert_eq!((outcome.status, outcome.message.as_str()), (Status::Succeeded, "done"), "{events:?}");
    let got = texts(&events);
    // A burst far beyond the relay's queue loses nothing.
    let burst = r#"const fs = require('fs'); module.exports = { run: async () => {
        for (let i = 0; i < 5000; i++) fs.writeSync(1, 'line ' + i + '\n');
        return 'done';
    } };"#;
    let (b, bevents) =
        h.run(&Execution::new(Script::new("burst", Language::Javascript, burst), json!({"args": {}}))).await;
    assert_eq!(b.status, Status::Succeeded);
    let lines = texts(&bevents);
    assert_eq!(lines.len(), 5000, "{:?}", lines.last());
    assert_eq!(lines[4999].1, "line 4999");
    for want in [("LOG", "raw one"), ("ERROR", "raw two"), ("LOG", "after")] {
        assert!(got.iter().any(|(l, t)| l == want.0 && t == want.1), "{want:?} missing from {got:?}");
    }
    let py = r#"
import os
from ipaascore.BaseStep import BaseStep


class Raw(BaseStep):
    def execute(self):
        os.write(1, b"raw py\n")
        os.write(2, b"raw py err\n")
        self.logger.info("after")
        self.save_data_for_next_step({"ok": True})
"#;
    let (outcome, events) =
        h.run(&Execution::new(Script::new("Raw", Language::Python, py), json!({"log_level": 20}))).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?} {events:?}");
    assert_eq!(outcome.data, Some(json!({"ok": true})));
    let got = texts(&events);
    assert!(got.iter().any(|(l, t)| l == "LOG" && t == "raw py"), "{got:?}");
    assert!(got.iter().any(|(l, t)| l == "ERROR" && t == "raw py err"), "{got:?}");
}

/// Defect 6: secrets holding quotes, a backslash or a control character,
/// printed inside objects (where util.inspect and repr escape them).
#[tokio::test]
async fn secrets_are_masked_in_every_form_an_object_is_printed_in() {
    let h = Harness::new().await;
    let secrets = vec!["Pa'ss\"w\\rd1".to_string(), "ctl\u{1b}[31mX9".to_string()];
    let js = r#"module.exports = { run: async (args) => {
        const a = args.arguments;
        console.log({ pw: a.one, nested: [new Map([[a.two, 1]])] });
        console.dir({ pw: a.two });
        console.error(new Error('failed with ' + a.one));
        console.log('%o', { pw: a.one });
        // Objects with internal slots print as before (not copied).
        console.log(new URL('http://127.0.0.1/x'), new Headers({ a: 'b' }));
        return 'ok';
    } };"#;
    let mut exec = Execution::new(
        Script::new("printer", Language::Javascript, js),
        json!({"args": {"arguments": {"one": secrets[0], "two": secrets[1]}}}),
    );
    exec.secrets = secrets.clone();
    let (outcome, events) = h.run(&exec).await;
    assert_eq!(outcome.status, Status::Succeeded, "{events:?}");
    let py = r#"
from ipaascore.BaseStep import BaseStep


class Printer(BaseStep):
    def execute(self):
        one, two = self.get_app_variable("one"), self.get_app_variable("two")
        print({"pw": one, "more": (two,)})
        self.logger.info("values %r %s", {"pw": two}, [one])
        self.logger.warning("%(pw)r", {"pw": one})
"#;
    let mut pexec = Execution::new(
        Script::new("Printer", Language::Python, py),
        json!({"app_variables": {"one": secrets[0], "two": secrets[1]}, "log_level": 20}),
    );
    pexec.secrets = secrets.clone();
    let (poutcome, pevents) = h.run(&pexec).await;
    assert_eq!(poutcome.status, Status::Succeeded, "{pevents:?}");
    let all: Vec<String> = events.iter().chain(&pevents).map(|e| format!("{e:?}")).collect();
    assert!(all.len() >= 7, "{all:?}");
    for line in &all {
        // Every printed form of either secret gives itself away by one of
        // these fragments.
        for fragment in ["ss\\\"w", "ss\"w", "ss\\\\\"w", "rd1", "[31mX9", "31mX9"] {
            assert!(!line.contains(fragment), "a form of a secret leaked ({fragment}): {line}");
        }
    }
    assert!(all.iter().filter(|l| l.contains("********")).count() >= 6, "{all:?}");
}

/// Defect 12 (tracebacks): a script's stack shows its own name, never
/// where the server keeps its files.
#[tokio::test]
async fn tracebacks_show_the_scripts_name_not_server_paths() {
    let h = Harness::new().await;
    let dir = h.runtime.config().dir.to_string_lossy().into_owned();
    let js = "module.exports = { run: async () => { throw new Error('boom'); } };";
    let (outcome, events) =
        h.run(&Execution::new(Script::new("thrower", Language::Javascript, js), json!({"args": {}}))).await;
    let tb = outcome.traceback.clone().unwrap_or_default();
    assert!(tb.contains("thrower.js:1"), "{tb}");
    let py = "from ipaascore.BaseStep import BaseStep\n\n\ndef deeper():\n    raise ValueError('boom')\n\n\nclass Thrower(BaseStep):\n    def execute(self):\n        deeper()\n";
    let (poutcome, pevents) =
        h.run(&Execution::new(Script::new("Thrower", Language::Python, py), json!({"log_level": 20}))).await;
    let ptb = poutcome.traceback.clone().unwrap_or_default();
    assert!(ptb.contains("Thrower.py"), "{ptb}");
    let everything = format!("{outcome:?}{events:?}{poutcome:?}{pevents:?}");
    for private in [dir.as_str(), "/tmp/junction-run-", "/work/p-", "introspect-"] {
        assert!(!everything.contains(private), "{private} shown: {everything}");
    }
}

/// Defect 5: concurrent executions cannot read each other's working
/// directories.
async fn concurrent_executions_are_apart(bwrap: bool) {
    let d = data_dir();
    let h = harness(bwrap, &d).await;
    let victim = r#"
import os, time
from ipaascore.BaseStep import BaseStep


class Victim(BaseStep):
    def execute(self):
        with open("secret.txt", "w") as f:
            f.write("VICTIM-SECRET")
        # Hex: the worker hides its own paths in log lines.
        self.logger.info("cwd=" + os.getcwd().encode().hex())
        deadline = time.time() + 20
        while not os.path.exists(self.get_app_variable("gate")) and time.time() < deadline:
            time.sleep(0.01)
"#;
    let gate_dir = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(gate_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let gate = gate_dir.path().join("open");
    let mut vexec = Execution::new(
        Script::new("Victim", Language::Python, victim),
        json!({"app_variables": {"gate": gate}, "log_level": 20}),
    );
    vexec.tenant = "app:victim".into();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let runtime = h.runtime.clone();
    let victim_run = tokio::spawn(async move {
        let mut on = move |e: Event| {
            if let Event::Log { line, .. } = e {
                let _ = tx.send(line);
            }
        };
        runtime.execute(&vexec, &mut on, std::future::pending()).await.unwrap()
    });
    let cwd = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.unwrap().unwrap();
        if let Some((_, c)) = line.split_once("cwd=") {
            break String::from_utf8(hex::decode(c.trim()).unwrap()).unwrap();
        }
    };
    let reader = r#"
import os
from ipaascore.BaseStep import BaseStep


class Reader(BaseStep):
    def execute(self):
        target = self.get_app_variable("target")
        seen = {}
        for name, path in [("file", os.path.join(target, "secret.txt")), ("dir", target),
                           ("parent", os.path.dirname(target))]:
            try:
                if os.path.isdir(path):
                    seen[name] = sorted(os.listdir(path))
                else:
                    with open(path) as f:
                        seen[name] = f.read()
            except OSError as e:
                seen[name] = type(e).__name__
        self.save_data_for_next_step(seen)
"#;
    let mut rexec = Execution::new(
        Script::new("Reader", Language::Python, reader),
        json!({"app_variables": {"target": cwd}, "log_level": 20}),
    );
    rexec.tenant = "app:reader".into();
    let (outcome, events) = h.run(&rexec).await;
    std::fs::write(&gate, "").unwrap();
    let victim = victim_run.await.unwrap();
    assert_eq!(victim.status, Status::Succeeded, "{victim:?}");
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?} {events:?}");
    let seen: Value = outcome.data.unwrap();
    assert!(cwd.starts_with('/'), "{cwd}");
    assert!(!seen.to_string().contains("VICTIM-SECRET"), "bwrap={bwrap}: {seen}");
    assert!(!seen.to_string().contains("secret.txt"), "bwrap={bwrap}: {seen}");
}

#[tokio::test]
async fn concurrent_executions_cannot_read_each_others_directories_with_bubblewrap() {
    concurrent_executions_are_apart(true).await;
}

#[tokio::test]
async fn concurrent_executions_cannot_read_each_others_directories_without_bubblewrap() {
    assert!(root(), "without bubblewrap, executions are kept apart by uids: run as root (CI does)");
    concurrent_executions_are_apart(false).await;
}

/// Defect 4: a bwrap that is installed but fails makes the runtime
/// degraded (no execution starts) instead of running scripts unsandboxed;
/// `required` refuses to start without bwrap.
#[tokio::test]
async fn a_broken_bubblewrap_degrades_the_runtime_and_required_refuses_to_start_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("bwrap");
    std::fs::write(&fake, "#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let fake2 = fake.clone();
    let h = Harness::with(move |c| c.bwrap = Some(fake2)).await;
    let health = h.runtime.health();
    assert!(!health.ok, "{health:?}");
    assert_eq!(health.sandbox, "bubblewrap");
    assert!(health.problem.as_deref().unwrap_or_default().contains("Permission denied"), "{health:?}");
    let exec = Execution::new(
        Script::new("noop", Language::Javascript, "module.exports = { run: async () => 'ok' };"),
        json!({"args": {}}),
    );
    let refused = h.runtime.execute(&exec, &mut |_| {}, std::future::pending()).await;
    assert!(matches!(refused, Err(junction_runtime::RuntimeError::Unavailable(_))), "{refused:?}");

    let mut config = RuntimeConfig::new(dir.path().join("rt"));
    config.sandbox = Sandbox::Required;
    config.bwrap = None;
    let err = junction_runtime::Runtime::start(config).await.unwrap_err().to_string();
    assert!(err.contains("bubblewrap (bwrap) is not installed"), "{err}");
    let mut config = RuntimeConfig::new(dir.path().join("rt2"));
    config.sandbox = Sandbox::Required;
    config.bwrap = Some(fake);
    let err = junction_runtime::Runtime::start(config).await.unwrap_err().to_string();
    assert!(err.contains("does not work"), "{err}");
}
