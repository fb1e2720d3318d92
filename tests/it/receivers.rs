//! A receiver that checks our calls with libraries we did not write:
//! `tests/verifiers/receiver.py`, run with the pinned venv that
//! `hack/tools.sh verifiers` installs (standardwebhooks, cryptography,
//! PyJWT from PyPI). Killed by PID on drop.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::support::{repo_path, unique_name};

/// The venv's python, installed once per test run.
fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new(repo_path("hack/tools.sh"))
            .arg("verifiers")
            .stderr(Stdio::inherit())
            .output()
            .expect("running hack/tools.sh verifiers");
        assert!(
            out.status.success(),
            "hack/tools.sh verifiers could not install the pinned verifiers (standardwebhooks, cryptography, \
             PyJWT) from PyPI; the signing and identity tests need them"
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// The `whpk_` public key of `whsk_` key `key`, as `cryptography` derives it.
pub fn public_key(key: &str) -> String {
    let out = Command::new(python())
        .args([
            repo_path("tests/verifiers/receiver.py").as_os_str(),
            "public-key".as_ref(),
            key.as_ref(),
        ])
        .output()
        .expect("running the receiver");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A running receiver: its base URL and what it saw.
pub struct Receiver {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: PathBuf,
}

impl Receiver {
    /// Starts `receiver.py serve` with `args` (see its doc).
    pub fn start(args: &[&str]) -> Self {
        let log = std::env::temp_dir().join(format!("{}.jsonl", unique_name("receiver")));
        let mut child = Command::new(python())
            .arg(repo_path("tests/verifiers/receiver.py"))
            .args(["serve", "--log"])
            .arg(&log)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the receiver");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("reading the receiver's first line");
        let port = line
            .strip_prefix("listening on ")
            .map(str::trim)
            .unwrap_or_else(|| panic!("the receiver did not report its port: {line:?}"))
            .to_owned();
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Every request seen so far, oldest first.
    pub fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    /// The requests whose `webhook-id` is `id`.
    pub fn records_of(&self, id: &str) -> Vec<serde_json::Value> {
        self.records().into_iter().filter(|r| r["webhook-id"] == id).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
