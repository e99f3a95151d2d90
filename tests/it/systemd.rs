//! The deployment files (README and ARCHITECTURE.md): the units in `systemd/` pass
//! `systemd-analyze verify`, keep their sandboxing and secrets handling, and
//! `samples/crontab` is one well-formed cron line that runs a cycle every 5 minutes.
//!
//! `systemd-analyze` must be installed (Debian: `apt-get install systemd`; CI installs it).
//! Without it the verify tests fail and say so instead of passing unseen.

use std::path::{Path, PathBuf};
use std::process::Command;

use invoice_sync::config::{Cm, DEFAULT_CONFIG_PATH, Email};

const DAEMON: &str = "invoice-sync.service";
const ONESHOT: &str = "invoice-sync-run.service";
const TIMER: &str = "invoice-sync.timer";
/// One instance per administration (`/etc/invoice-sync/<name>.toml`).
const DAEMON_AT: &str = "invoice-sync@.service";
const ONESHOT_AT: &str = "invoice-sync-run@.service";
const TIMER_AT: &str = "invoice-sync-run@.timer";
const UNITS: [&str; 6] = [DAEMON, ONESHOT, TIMER, DAEMON_AT, ONESHOT_AT, TIMER_AT];

/// Where the units expect the binary; the verify tests point it at the test build.
const INSTALLED_BINARY: &str = "/usr/local/bin/invoice-sync";
/// Where the units expect the credential files (LoadCredential= sources).
const CREDENTIALS_DIR: &str = "/etc/invoice-sync/credentials";

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn unit_text(name: &str) -> String {
    repo_file(&format!("systemd/{name}"))
}

/// One `Key=value` line of a unit file, with the section it is in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Setting {
    section: String,
    key: String,
    value: String,
}

/// The settings of a unit file in file order: comments and blank lines dropped,
/// backslash continuations joined, as systemd reads them.
fn parse_unit(text: &str) -> Vec<Setting> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        if full.starts_with('[') && full.ends_with(']') {
            section = full[1..full.len() - 1].to_string();
            continue;
        }
        let (key, value) = full
            .split_once('=')
            .unwrap_or_else(|| panic!("not a Key=value line: {full:?}"));
        out.push(Setting {
            section: section.clone(),
            key: key.trim().to_string(),
            value: value.trim().to_string(),
        });
    }
    out
}

fn values<'a>(unit: &'a [Setting], section: &str, key: &str) -> Vec<&'a str> {
    unit.iter()
        .filter(|s| s.section == section && s.key == key)
        .map(|s| s.value.as_str())
        .collect()
}

/// The one value of a key that must be set exactly once.
fn single<'a>(name: &str, unit: &'a [Setting], section: &str, key: &str) -> &'a str {
    match values(unit, section, key).as_slice() {
        [v] => v,
        other => panic!("{name}: [{section}] {key}= must be set once, found {other:?}"),
    }
}

fn exit_statuses(unit: &[Setting], key: &str) -> Vec<String> {
    values(unit, "Service", key)
        .iter()
        .flat_map(|v| v.split_whitespace())
        .map(str::to_string)
        .collect()
}

/// The systemd credential names the program reads from `$CREDENTIALS_DIRECTORY`.
fn credential_names() -> [&'static str; 2] {
    [
        Cm::default().client_secret_source().credential,
        Email::default().smtp_password_source().credential,
    ]
}

// ---------------------------------------------------------------------------------------
// systemd-analyze verify

/// Copies the units into `dir`, their ExecStart= pointing at the test build (verify
/// checks that the executable exists), templates as an instance (`invoice-sync@acme.service`:
/// verify loads units, not templates), and returns the copies' paths.
fn copy_units_for_verify(dir: &Path, tweak: impl Fn(&str, String) -> String) -> Vec<PathBuf> {
    let binary = env!("CARGO_BIN_EXE_invoice-sync");
    UNITS
        .iter()
        .map(|name| {
            let text = unit_text(name)
                .lines()
                .map(
                    |l| match l.strip_prefix(&format!("ExecStart={INSTALLED_BINARY}")) {
                        Some(rest) => format!("ExecStart={binary}{rest}\n"),
                        None => format!("{l}\n"),
                    },
                )
                .collect::<String>();
            let path = dir.join(name.replace("@.", "@acme."));
            std::fs::write(&path, tweak(name, text)).unwrap();
            path
        })
        .collect()
}

struct Verified {
    success: bool,
    /// stderr lines about our units: each one is a problem.
    ours: Vec<String>,
    /// stderr lines about anything else, reported but not held against the units.
    others: Vec<String>,
}

/// Runs `systemd-analyze verify` on the files and sorts its stderr.
///
/// verify loads the whole unit search path (/etc/systemd/system, /lib/systemd/system) to
/// resolve dependencies such as network-online.target, and depending on the machine it
/// can print warnings that have nothing to do with these files: other packages' units
/// using deprecated keys, or, in a container, missing /proc or cgroup bits. Those lines
/// name neither our files, nor our units, nor the binary. Every line that does name one
/// of them (all contain "invoice-sync": `<dir>/invoice-sync.service:12: Unknown key ...`,
/// `invoice-sync.service: Command ... is not executable`) is a problem, warnings
/// included: verify exits 0 on an unknown key or a bad value it ignores, so the exit
/// status alone would let a typo in a hardening key pass.
fn verify(dir: &Path, files: &[PathBuf]) -> Verified {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        // no man page lookups (Documentation= is not set; man-db is not needed)
        .arg("--man=no")
        // generators need privileges and only add unrelated units
        .arg("--generators=no")
        // judge the exit status by these units only, not by every unit they pull in
        .arg("--recursive-errors=no")
        .args(files)
        // a developer's SYSTEMD_LOG_LEVEL=debug would flood stderr; info shows every
        // warning about a unit file
        .env("SYSTEMD_LOG_LEVEL", "info")
        .env("SYSTEMD_LOG_COLOR", "0")
        .env("SYSTEMD_PAGER", "")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run systemd-analyze ({e}): install systemd's tools \
                 (Debian/Ubuntu: `apt-get install systemd`) to check the units in systemd/; \
                 CI installs them"
            )
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    let dir_text = dir.display().to_string();
    let (ours, others): (Vec<String>, Vec<String>) = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .partition(|l| l.contains("invoice-sync") || l.contains(&dir_text));
    Verified {
        success: out.status.success(),
        ours,
        others,
    }
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let dir = tempfile::tempdir().unwrap();
    let files = copy_units_for_verify(dir.path(), |_, text| text);
    let v = verify(dir.path(), &files);
    for l in &v.others {
        eprintln!("systemd-analyze (not about these units, ignored): {l}");
    }
    assert!(
        v.success && v.ours.is_empty(),
        "systemd-analyze verify refused the units (exit success: {}):\n{}",
        v.success,
        v.ours.join("\n")
    );
}

/// The filter in [`verify`] is not blind: a misspelt hardening key, which verify only
/// warns about, and a missing binary are both caught.
#[test]
fn systemd_analyze_verify_catches_a_misspelt_key_and_a_missing_binary() {
    let dir = tempfile::tempdir().unwrap();
    let files = copy_units_for_verify(dir.path(), |name, text| {
        if name == DAEMON {
            text.replace("ProtectSystem=strict", "ProtectSystm=strict")
        } else if name == ONESHOT {
            text.replace(
                env!("CARGO_BIN_EXE_invoice-sync"),
                "/nonexistent/invoice-sync",
            )
        } else {
            text
        }
    });
    let v = verify(dir.path(), &files);
    assert!(
        v.ours.iter().any(|l| l.contains("ProtectSystm")),
        "the misspelt key went unnoticed: {:?} / {:?}",
        v.ours,
        v.others
    );
    assert!(
        !v.success
            && v.ours
                .iter()
                .any(|l| l.contains("/nonexistent/invoice-sync")),
        "the missing binary went unnoticed: {:?} / {:?}",
        v.ours,
        v.others
    );
}

// ---------------------------------------------------------------------------------------
// What the units must keep

/// Per-unit [Service] keys; everything else in [Service] is the shared sandbox.
const PER_UNIT_KEYS: [&str; 10] = [
    "Type",
    "NotifyAccess",
    "ExecStart",
    "WatchdogSec",
    "TimeoutStartSec",
    "TimeoutStopSec",
    "Restart",
    "RestartSec",
    "RestartPreventExitStatus",
    "SuccessExitStatus",
];

fn sandbox(unit: &[Setting]) -> Vec<Setting> {
    unit.iter()
        .filter(|s| s.section == "Service" && !PER_UNIT_KEYS.contains(&s.key.as_str()))
        .cloned()
        .collect()
}

fn assert_sandboxed(name: &str, unit: &[Setting]) {
    let required = [
        ("StateDirectory", "invoice-sync"),
        ("ConfigurationDirectory", "invoice-sync"),
        ("UMask", "0027"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("LimitNOFILE", "8192"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("SystemCallErrorNumber", "EPERM"),
        ("SystemCallArchitectures", "native"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
    ];
    for (key, want) in required {
        assert_eq!(
            single(name, unit, "Service", key),
            want,
            "{name}: [Service] {key}="
        );
    }
    let filters = values(unit, "Service", "SystemCallFilter");
    assert!(
        filters.first() == Some(&"@system-service"),
        "{name}: SystemCallFilter=@system-service must come first (an allow list), found {filters:?}"
    );

    // Not root: a dedicated user, or a dynamic one.
    let user = values(unit, "Service", "User");
    let dynamic = values(unit, "Service", "DynamicUser");
    assert!(
        dynamic == ["yes"] || (user.len() == 1 && !["", "root", "0"].contains(&user[0])),
        "{name}: must run as a dedicated (User=) or dynamic (DynamicUser=yes) user, found User={user:?} DynamicUser={dynamic:?}"
    );

    // The secrets come as systemd credentials, under the names the program reads.
    let creds = values(unit, "Service", "LoadCredential");
    for id in credential_names() {
        let want = format!("{id}:{CREDENTIALS_DIR}/{id}");
        assert!(
            creds.contains(&want.as_str()),
            "{name}: LoadCredential={want} is missing (found {creds:?})"
        );
    }

    // Writable places beyond the StateDirectory are the operator's (a drop-in), never
    // shipped: a stray ReadWritePaths=/ would undo ProtectSystem=strict.
    let rw = values(unit, "Service", "ReadWritePaths");
    assert!(
        rw.is_empty(),
        "{name}: ships ReadWritePaths={rw:?}; leave it commented out"
    );
}

/// `ExecStart=` is the installed binary with the default config path and `command`.
fn assert_exec_start(name: &str, unit: &[Setting], command: &str) {
    let want = format!("{INSTALLED_BINARY} --config {DEFAULT_CONFIG_PATH} {command}");
    assert_eq!(single(name, unit, "Service", "ExecStart"), want, "{name}");
}

#[test]
fn the_daemon_unit_is_a_sandboxed_notify_service() {
    let unit = parse_unit(&unit_text(DAEMON));
    assert_exec_start(DAEMON, &unit, "daemon");
    assert_eq!(single(DAEMON, &unit, "Service", "Type"), "notify");
    assert_eq!(single(DAEMON, &unit, "Service", "NotifyAccess"), "main");
    assert_eq!(single(DAEMON, &unit, "Service", "Restart"), "on-failure");
    for key in ["WatchdogSec", "RestartSec", "TimeoutStopSec"] {
        let v = single(DAEMON, &unit, "Service", key);
        assert!(
            !["", "0", "infinity"].contains(&v),
            "{DAEMON}: {key}={v} disables it"
        );
    }
    // 2 (usage) cannot be fixed by a restart; 75 (run lock held) must be retried, not
    // taken as a clean stop that leaves the daemon down.
    let prevent = exit_statuses(&unit, "RestartPreventExitStatus");
    let success = exit_statuses(&unit, "SuccessExitStatus");
    assert!(prevent.contains(&"2".to_string()), "{DAEMON}: {prevent:?}");
    assert!(
        !prevent.contains(&"75".to_string()) && !success.contains(&"75".to_string()),
        "{DAEMON}: exit 75 must lead to a restart"
    );
    assert_eq!(
        single(DAEMON, &unit, "Install", "WantedBy"),
        "multi-user.target"
    );
    assert_sandboxed(DAEMON, &unit);
}

#[test]
fn the_oneshot_unit_runs_one_cycle_with_the_same_sandbox() {
    let unit = parse_unit(&unit_text(ONESHOT));
    assert_exec_start(ONESHOT, &unit, "run");
    assert_eq!(single(ONESHOT, &unit, "Service", "Type"), "oneshot");
    // 75: another cycle holds the lock, not a failure. 3 (needs attention) is a failure
    // on purpose, so that OnFailure= and `systemctl --failed` see it (see the unit).
    let success = exit_statuses(&unit, "SuccessExitStatus");
    assert!(
        success.contains(&"75".to_string()),
        "{ONESHOT}: SuccessExitStatus must hold 75"
    );
    assert!(
        !success.contains(&"3".to_string()),
        "{ONESHOT}: exit 3 is meant to fail the unit; change the unit's comment and this test together"
    );
    for key in ["Restart", "WatchdogSec"] {
        assert!(
            values(&unit, "Service", key).is_empty(),
            "{ONESHOT}: {key}= does not belong in a oneshot run by a timer"
        );
    }
    assert!(
        unit.iter().all(|s| s.section != "Install"),
        "{ONESHOT}: the timer starts it; it must not be enabled by itself"
    );
    assert_sandboxed(ONESHOT, &unit);

    let daemon = parse_unit(&unit_text(DAEMON));
    assert_eq!(
        sandbox(&unit),
        sandbox(&daemon),
        "the sandbox of {ONESHOT} and {DAEMON} must be the same, line for line"
    );
}

/// A template's settings as the plain unit's would be: the instance's config file, state
/// folder and credential folder put back to the single-administration ones.
fn as_single(unit: &[Setting]) -> Vec<Setting> {
    unit.iter()
        .map(|s| Setting {
            value: s
                .value
                .replace("/etc/invoice-sync/%i.toml", DEFAULT_CONFIG_PATH)
                .replace("invoice-sync/%i", "invoice-sync")
                .replace("credentials/%i/", "credentials/")
                .replace("-run@%i.service", "-run.service"),
            ..s.clone()
        })
        .filter(|s| s.key != "Description")
        .collect()
}

/// Many administrations on one host: each template is its single unit with the instance
/// name in exactly three places (config, state folder, credentials), so that instances
/// share nothing and keep every protection.
#[test]
fn the_template_units_are_the_single_ones_per_administration() {
    for (template, single_unit) in [
        (DAEMON_AT, DAEMON),
        (ONESHOT_AT, ONESHOT),
        (TIMER_AT, TIMER),
    ] {
        let t = parse_unit(&unit_text(template));
        let s = parse_unit(&unit_text(single_unit));
        let plain: Vec<Setting> = s.into_iter().filter(|x| x.key != "Description").collect();
        assert_eq!(
            as_single(&t),
            plain,
            "{template} differs from {single_unit} beyond the instance"
        );
        assert!(
            values(&t, "Unit", "Description")
                .iter()
                .any(|d| d.contains("%i")),
            "{template}: the description names the instance"
        );
    }
    for template in [DAEMON_AT, ONESHOT_AT] {
        let t = parse_unit(&unit_text(template));
        assert!(
            single(template, &t, "Service", "ExecStart")
                .contains("--config /etc/invoice-sync/%i.toml"),
            "{template}"
        );
        assert_eq!(
            single(template, &t, "Service", "StateDirectory"),
            "invoice-sync/%i"
        );
        for id in credential_names() {
            let want = format!("{id}:{CREDENTIALS_DIR}/%i/{id}");
            assert!(
                values(&t, "Service", "LoadCredential").contains(&want.as_str()),
                "{template}: LoadCredential={want}"
            );
        }
        assert_sandboxed(template, &as_single(&t));
    }
    let timer = parse_unit(&unit_text(TIMER_AT));
    assert_eq!(
        single(TIMER_AT, &timer, "Timer", "Unit"),
        "invoice-sync-run@%i.service"
    );
}

#[test]
fn the_timer_starts_the_oneshot_every_five_minutes() {
    let unit = parse_unit(&unit_text(TIMER));
    assert_eq!(single(TIMER, &unit, "Timer", "OnCalendar"), "*:0/5");
    assert_eq!(single(TIMER, &unit, "Timer", "Persistent"), "true");
    assert_eq!(single(TIMER, &unit, "Timer", "Unit"), ONESHOT);
    assert!(!single(TIMER, &unit, "Timer", "RandomizedDelaySec").is_empty());
    assert_eq!(single(TIMER, &unit, "Install", "WantedBy"), "timers.target");
}

// ---------------------------------------------------------------------------------------
// samples/crontab

/// Expands one cron schedule field (`*`, `N`, `A-B`, with `/STEP` on `*` or a range,
/// comma lists) into its values, or says why it is not one.
fn cron_field(field: &str, lo: u32, hi: u32) -> Result<Vec<u32>, String> {
    let num = |s: &str| -> Result<u32, String> {
        let n: u32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
        if (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{n} is outside {lo}-{hi}"))
        }
    };
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("bad step in {item:?}"))?;
                if step == 0 {
                    return Err(format!("zero step in {item:?}"));
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let (from, to) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(format!("empty range {range:?}"));
            }
            (a, b)
        } else {
            if step.is_some() {
                return Err(format!("a step needs `*` or a range: {item:?}"));
            }
            let n = num(range)?;
            (n, n)
        };
        out.extend((from..=to).step_by(step.unwrap_or(1) as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[test]
fn cron_field_parser_knows_good_from_bad() {
    assert_eq!(cron_field("*/20", 0, 59).unwrap(), vec![0, 20, 40]);
    assert_eq!(cron_field("1-5,7", 0, 7).unwrap(), vec![1, 2, 3, 4, 5, 7]);
    assert_eq!(cron_field("10-20/5", 0, 59).unwrap(), vec![10, 15, 20]);
    for bad in ["60", "*/0", "5/10", "a", "", "3-1", "*/x"] {
        assert!(cron_field(bad, 0, 59).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn sample_crontab_runs_a_cycle_every_five_minutes() {
    let text = repo_file("samples/crontab");
    let jobs: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        // NAME=value lines set the environment of the jobs
        .filter(|l| {
            let first = l.split_whitespace().next().unwrap_or("");
            !(first.contains('=') && first.starts_with(|c: char| c.is_ascii_alphabetic()))
        })
        .collect();
    let [job] = jobs.as_slice() else {
        panic!("samples/crontab must hold exactly one job line, found {jobs:?}");
    };

    let fields: Vec<&str> = job.split_whitespace().collect();
    assert!(fields.len() > 5, "not a 5-field cron line: {job:?}");
    let bounds = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
    let names = ["minute", "hour", "day of month", "month", "day of week"];
    let mut schedule = Vec::new();
    for ((field, (lo, hi)), what) in fields[..5].iter().zip(bounds).zip(names) {
        let v = cron_field(field, lo, hi)
            .unwrap_or_else(|e| panic!("samples/crontab: {what} field {field:?}: {e}"));
        schedule.push(v);
    }
    assert_eq!(
        schedule[0],
        (0..60).step_by(5).collect::<Vec<u32>>(),
        "every 5 minutes"
    );
    for (v, (lo, hi)) in schedule[1..4].iter().zip(&bounds[1..4]) {
        assert_eq!(
            v,
            &(*lo..=*hi).collect::<Vec<u32>>(),
            "every hour, every day"
        );
    }
    assert!(schedule[4].len() >= 7, "every day of the week");

    // The command: the installed binary, the config, `run`, before any pipe.
    let command = &fields[5..];
    assert_eq!(command[0], INSTALLED_BINARY, "{job}");
    let own: Vec<&str> = command
        .iter()
        .take_while(|t| !t.starts_with('|') && !t.starts_with('>') && !t.starts_with("2>"))
        .copied()
        .collect();
    let config_at = own
        .iter()
        .position(|t| *t == "--config")
        .unwrap_or_else(|| panic!("no --config in {job}"));
    assert_eq!(own.get(config_at + 1), Some(&DEFAULT_CONFIG_PATH), "{job}");
    assert_eq!(own.last(), Some(&"run"), "the command must be `run`: {job}");
    assert!(
        !job.contains("flock"),
        "no flock: the program has its own run lock and exits 75 at once"
    );
    // cron turns an unescaped % into a newline
    assert!(
        !job.replace("\\%", "").contains('%'),
        "unescaped % in {job}"
    );

    // The program itself accepts that command line.
    let out = Command::new(env!("CARGO_BIN_EXE_invoice-sync"))
        .args(&own[1..])
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "invoice-sync refuses {own:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_units_command_lines_are_accepted_by_the_program() {
    for name in [ONESHOT, DAEMON] {
        let unit = parse_unit(&unit_text(name));
        let exec = single(name, &unit, "Service", "ExecStart");
        let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
        let out = Command::new(env!("CARGO_BIN_EXE_invoice-sync"))
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "invoice-sync refuses {args:?} of {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
