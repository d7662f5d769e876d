//! The standalone CLI's state: a JSON file plus a journal beside it. Every successful action
//! appends one line to the journal and syncs it before the next step, so a crash at any
//! instant loses nothing; the file is rewritten atomically (temp file, fsync, rename, fsync of
//! the directory) and the journal emptied when a command finishes. Readers replay the journal
//! (a torn last line is ignored). An OS lock keeps two applies from interleaving. Under wfctl,
//! wfctl owns state instead.

use crate::runtime::wit;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub provider: String,
    #[serde(default)]
    pub provider_ref: String,
    pub provider_id: String,
    pub config_hash: String,
    pub applied_config: Value,
    #[serde(default)]
    pub applied_config_source: String,
    pub outputs: Value,
    #[serde(default)]
    pub dependencies: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct StateFile {
    pub version: u32,
    #[serde(default)]
    pub resources: Vec<Record>,
}

pub struct State {
    path: PathBuf,
    _lock: Option<File>,
    journal: Option<File>,
    data: StateFile,
    /// Name -> position in `data.resources`, so lookups during a large apply stay O(1).
    index: HashMap<String, usize>,
}

/// One journal line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Entry {
    Upsert { record: Box<Record> },
    Remove { name: String },
}

fn journal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn config_hash(config_json: &str) -> String {
    hex::encode(Sha256::digest(config_json.as_bytes()))
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Takes the state lock, waiting up to `timeout`. The OS releases it if the holder dies,
/// so a killed apply never leaves a stale lock behind.
fn acquire(path: &Path, timeout: Duration, command: &str) -> Result<File> {
    let lp = lock_path(path);
    if let Some(dir) = lp.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lp)
        .with_context(|| format!("opening the lock file {}", lp.display()))?;
    let started = Instant::now();
    loop {
        match f.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = f.read_to_string(&mut holder);
                bail!(
                    "the state {} is locked by another eventbus process ({}); wait for it to finish, pass --lock-timeout to wait longer, or stop it with `eventbus unlock --force`",
                    path.display(),
                    if holder.trim().is_empty() {
                        "holder unknown".to_string()
                    } else {
                        holder.trim().to_string()
                    }
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", lp.display()));
            }
        }
    }
    f.set_len(0)?;
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    write!(
        f,
        "pid {} on {} running `{command}` since {}",
        std::process::id(),
        host.trim(),
        now_rfc3339()
    )?;
    f.flush()?;
    Ok(f)
}

/// Who holds the state lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockStatus {
    /// Nobody holds it; `last` is the line the last holder left in the lock file (a process
    /// that has ended, however it ended), if any.
    Free { last: Option<String> },
    /// Held: the holder's own line (pid, host, command, since), and its pid when it is a
    /// process on this machine that really has the lock file open.
    Held { holder: String, pid: Option<u32> },
}

/// Whether the state at `path` is locked, and by whom. The lock is the kernel's (flock):
/// a holder that died released it, so a held lock always has a live holder.
pub fn lock_status(path: &Path) -> Result<LockStatus> {
    let lp = lock_path(path);
    let mut f = match File::open(&lp) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LockStatus::Free { last: None });
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", lp.display())),
    };
    let mut holder = String::new();
    match f.try_lock_shared() {
        Ok(()) => {
            let _ = f.read_to_string(&mut holder);
            let last = Some(holder.trim().to_string()).filter(|h| !h.is_empty());
            Ok(LockStatus::Free { last })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim().to_string();
            let pid = holder
                .strip_prefix("pid ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| p.parse::<u32>().ok())
                .filter(|&pid| has_open(pid, &lp));
            Ok(LockStatus::Held { holder, pid })
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("checking the lock {}", lp.display()))
        }
    }
}

/// Whether process `pid` on this machine has `file` open (so the pid a lock file names is
/// really its holder, not a recycled number).
fn has_open(pid: u32, file: &Path) -> bool {
    let Ok(want) = std::fs::canonicalize(file) else {
        return false;
    };
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|e| e.ok())
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == want))
}

/// Breaks the lock on the state at `path` by stopping its holder: SIGTERM, then SIGKILL when
/// it has not let go after `grace`. Safe because every action the holder finished is already
/// durable in the journal; the next apply continues from there. Returns the stopped pid, or
/// `None` when the state was not locked. A holder that is not a process on this machine
/// cannot be stopped from here, and that is an error naming it.
pub fn break_lock(path: &Path, grace: Duration) -> Result<Option<u32>> {
    let (holder, pid) = match lock_status(path)? {
        LockStatus::Free { .. } => return Ok(None),
        LockStatus::Held { holder, pid } => (holder, pid),
    };
    let Some(pid) = pid else {
        bail!(
            "the state {} is locked by {}, which is not a process on this machine with the lock file open; stop it where it runs",
            path.display(),
            if holder.is_empty() {
                "an unknown holder"
            } else {
                &holder
            }
        );
    };
    let released = |within: Duration| {
        let until = Instant::now() + within;
        loop {
            if matches!(lock_status(path), Ok(LockStatus::Free { .. })) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    for (signal, wait) in [("-TERM", grace), ("-KILL", Duration::from_secs(10))] {
        let _ = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status();
        if released(wait) {
            return Ok(Some(pid));
        }
    }
    bail!(
        "pid {pid} still holds the lock on {} after SIGKILL",
        path.display()
    )
}

impl State {
    /// Reads the state (an absent file is empty state). With `lock`, holds the lock until drop.
    pub fn open(path: &Path, lock: Option<(Duration, &str)>) -> Result<State> {
        let lock = match lock {
            Some((timeout, command)) => Some(acquire(path, timeout, command)?),
            None => None,
        };
        let data = match std::fs::read(path) {
            Ok(bytes) => {
                let data: StateFile = serde_json::from_slice(&bytes).with_context(|| {
                    format!("the state file {} is not valid JSON state", path.display())
                })?;
                if data.version > FORMAT_VERSION {
                    bail!(
                        "the state file {} has format {}, newer than this eventbus understands ({FORMAT_VERSION})",
                        path.display(),
                        data.version
                    );
                }
                data
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile {
                version: FORMAT_VERSION,
                resources: vec![],
            },
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let locked = lock.is_some();
        let mut state = State {
            path: path.to_path_buf(),
            _lock: lock,
            journal: None,
            data,
            index: HashMap::new(),
        };
        state.reindex();
        state.replay()?;
        if locked {
            let jp = journal_path(path);
            state.journal = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&jp)
                    .with_context(|| format!("opening {}", jp.display()))?,
            );
        }
        Ok(state)
    }

    /// Applies what the journal recorded after the file was last written.
    fn replay(&mut self) -> Result<()> {
        let text = match std::fs::read_to_string(journal_path(&self.path)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).context("reading the state journal"),
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // A line cut short by a crash is the one action whose record did not make it; the
            // next apply meets that resource again and adopts it (create is idempotent).
            let Ok(entry) = serde_json::from_str::<Entry>(line) else {
                continue;
            };
            self.apply_entry(entry);
        }
        Ok(())
    }

    fn apply_entry(&mut self, e: Entry) {
        match e {
            Entry::Upsert { record } => self.upsert(*record),
            Entry::Remove { name } => self.remove(&name),
        }
    }

    /// Appends one action's result to the journal (not yet synced) and applies it; returns a
    /// handle on the journal for the caller to sync without holding the state. Syncs from
    /// concurrent actions overlap, so one flush can carry several lines (group commit); each
    /// action still waits for its own line to be durable before anything depends on it.
    pub fn append(&mut self, e: Entry) -> Result<File> {
        let Some(j) = &mut self.journal else {
            bail!("internal: state opened without its lock cannot be changed")
        };
        let mut line = serde_json::to_vec(&e)?;
        line.push(b'\n');
        j.write_all(&line)?;
        let handle = j.try_clone().context("duplicating the journal handle")?;
        self.apply_entry(e);
        Ok(handle)
    }

    /// Records one action's result durably: appended to the journal and synced.
    pub fn commit(&mut self, e: Entry) -> Result<()> {
        match &mut self.journal {
            Some(j) => {
                let mut line = serde_json::to_vec(&e)?;
                line.push(b'\n');
                j.write_all(&line)?;
                j.sync_data().context("syncing the state journal")?;
            }
            None => bail!("internal: state opened without its lock cannot be changed"),
        }
        self.apply_entry(e);
        Ok(())
    }

    /// Writes the whole file atomically and empties the journal.
    pub fn compact(&mut self) -> Result<()> {
        self.save()?;
        if let Some(j) = &mut self.journal {
            j.set_len(0)?;
            j.sync_all()?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the whole state atomically: a reader sees the old file or the new one, never half.
    pub fn save(&self) -> Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            self.path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("state"),
            std::process::id()
        ));
        let mut f = File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(&self.data)?)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("replacing {}", self.path.display()))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn reindex(&mut self) {
        self.index = (self.data.resources.iter().enumerate())
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
    }

    /// The records, in the order in which resources were first applied.
    pub fn records(&self) -> &[Record] {
        &self.data.resources
    }

    pub fn get(&self, name: &str) -> Option<&Record> {
        self.index.get(name).map(|&i| &self.data.resources[i])
    }

    /// Inserts or replaces a record, keeping the order in which resources were first applied.
    pub fn upsert(&mut self, rec: Record) {
        match self.index.get(&rec.name) {
            Some(&i) => self.data.resources[i] = rec,
            None => {
                self.index
                    .insert(rec.name.clone(), self.data.resources.len());
                self.data.resources.push(rec);
            }
        }
    }

    pub fn remove(&mut self, name: &str) {
        if let Some(i) = self.index.remove(name) {
            self.data.resources.remove(i);
            for j in self.index.values_mut().filter(|j| **j > i) {
                *j -= 1;
            }
        }
    }

    pub fn to_wit(&self) -> Vec<wit::ResourceState> {
        self.data.resources.iter().map(record_to_wit).collect()
    }

    pub fn refs(&self) -> Vec<wit::ResourceRef> {
        self.data
            .resources
            .iter()
            .map(|r| wit::ResourceRef {
                name: r.name.clone(),
                resource_type: r.rtype.clone(),
                provider_id: r.provider_id.clone(),
            })
            .collect()
    }
}

pub fn record_to_wit(r: &Record) -> wit::ResourceState {
    wit::ResourceState {
        id: r.name.clone(),
        name: r.name.clone(),
        resource_type: r.rtype.clone(),
        provider: r.provider.clone(),
        provider_ref: r.provider_ref.clone(),
        provider_id: r.provider_id.clone(),
        config_hash: r.config_hash.clone(),
        applied_config_json: r.applied_config.to_string(),
        applied_config_source: r.applied_config_source.clone(),
        outputs_json: r.outputs.to_string(),
        dependencies: r.dependencies.clone(),
        created_at: None,
        updated_at: None,
        last_drift_check: None,
    }
}

/// The record for a resource a driver just created or updated.
pub fn record_from(
    spec: &wit::ResourceSpec,
    out: &wit::ResourceOutput,
    provider_ref: &str,
    previous: Option<&Record>,
) -> Record {
    let now = now_rfc3339();
    Record {
        name: spec.name.clone(),
        rtype: spec.resource_type.clone(),
        provider: crate::infra::PROVIDER_NAME.into(),
        provider_ref: provider_ref.into(),
        provider_id: out.provider_id.clone(),
        config_hash: config_hash(&spec.config_json),
        applied_config: serde_json::from_str(&spec.config_json).unwrap_or(Value::Null),
        applied_config_source: "apply".into(),
        outputs: serde_json::from_str(&out.outputs_json).unwrap_or(Value::Null),
        dependencies: spec.depends_on.clone(),
        created_at: previous.map_or_else(|| now.clone(), |p| p.created_at.clone()),
        updated_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str) -> Record {
        Record {
            name: name.into(),
            rtype: "infra.eventbus.stream".into(),
            provider: "eventbus".into(),
            provider_ref: String::new(),
            provider_id: format!("b/{name}"),
            config_hash: String::new(),
            applied_config: Value::Null,
            applied_config_source: "apply".into(),
            outputs: Value::Null,
            dependencies: vec![],
            created_at: now_rfc3339(),
            updated_at: now_rfc3339(),
        }
    }

    #[test]
    fn lookups_stay_right_through_upserts_and_removals() {
        // The name index must follow every removal (positions shift) and replacement.
        let path = std::env::temp_dir().join(format!("eventbus-index-{}.json", std::process::id()));
        let mut s = State::open(&path, None).unwrap();
        for n in ["a", "b", "c", "d"] {
            s.upsert(rec(n));
        }
        s.remove("b");
        s.remove("zz");
        let mut c = rec("c");
        c.provider_id = "changed".into();
        s.upsert(c);
        s.upsert(rec("e"));
        let names: Vec<&str> = s.records().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "d", "e"]);
        assert!(s.get("b").is_none());
        for n in ["a", "c", "d", "e"] {
            assert_eq!(s.get(n).map(|r| r.name.as_str()), Some(n));
        }
        assert_eq!(s.get("c").unwrap().provider_id, "changed");
    }

    #[test]
    fn saves_atomically_and_reads_back_in_apply_order() {
        // What was saved is what the next run reads, in the order resources were applied.
        let dir = std::env::temp_dir().join(format!("eventbus-state-test-{}", std::process::id()));
        let path = dir.join("state.json");
        let mut s = State::open(&path, None).unwrap();
        s.upsert(rec("b"));
        s.upsert(rec("a"));
        s.save().unwrap();
        let back = State::open(&path, None).unwrap();
        let names: Vec<&str> = back
            .data
            .resources
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["b", "a"]);
        // No temp file is left beside it.
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_journal_survives_without_compaction_and_ignores_a_torn_line() {
        // A crash after commit but before compact loses nothing; a half-written line is skipped.
        let dir =
            std::env::temp_dir().join(format!("eventbus-journal-test-{}", std::process::id()));
        let path = dir.join("state.json");
        {
            let mut s = State::open(&path, Some((Duration::ZERO, "apply"))).unwrap();
            s.commit(Entry::Upsert {
                record: Box::new(rec("a")),
            })
            .unwrap();
            s.commit(Entry::Upsert {
                record: Box::new(rec("b")),
            })
            .unwrap();
            s.commit(Entry::Remove { name: "a".into() }).unwrap();
        }
        let mut j = OpenOptions::new()
            .append(true)
            .open(journal_path(&path))
            .unwrap();
        j.write_all(b"{\"op\":\"upsert\",\"record\":{\"na").unwrap();
        let back = State::open(&path, None).unwrap();
        let names: Vec<&str> = back
            .data
            .resources
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["b"]);
        // Compaction folds the journal into the file and empties it.
        let mut s = State::open(&path, Some((Duration::ZERO, "apply"))).unwrap();
        s.compact().unwrap();
        assert_eq!(std::fs::metadata(journal_path(&path)).unwrap().len(), 0);
        assert_eq!(State::open(&path, None).unwrap().data.resources.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_locker_is_refused_with_the_holder_named() {
        // Two applies on one state cannot interleave; the loser learns who holds it.
        let dir = std::env::temp_dir().join(format!("eventbus-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let _held = State::open(&path, Some((Duration::ZERO, "apply"))).unwrap();
        let err = State::open(&path, Some((Duration::from_millis(200), "apply")))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("locked"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rfc3339_timestamps_look_right() {
        // A sanity check on the hand-written civil-date conversion.
        let t = now_rfc3339();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
