//! `scripts/setup.sh`, which both README commands run first: as a normal user on a machine
//! without a C compiler (rustup brings none) and without PostgreSQL, it names everything
//! missing in one line, with --no-install-recommends.

use std::os::unix::fs::symlink;
use std::process::Command;

/// Runs setup.sh with only `tools` on PATH (and cargo), as an unprivileged user.
fn setup_with(tools: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let bin = tempfile::tempdir().unwrap();
    let which = |tool: &str| {
        let out = Command::new("bash")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    for tool in tools {
        let path = which(tool);
        assert!(!path.is_empty(), "{tool} is not on this machine");
        symlink(&path, bin.path().join(tool)).unwrap();
    }
    // setup.sh only asks whether cargo is there (the real one may be in a home the other
    // user cannot read).
    let cargo = bin.path().join("cargo");
    std::fs::write(&cargo, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // A copy that the other user can read wherever the checkout is.
    let script = bin.path().join("setup.sh");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/setup.sh"),
        &script,
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let mut cmd = if root {
        // setup.sh acts on its own as root; the user without rights is the case here.
        let mut c = Command::new(which("runuser"));
        c.args(["-u", "nobody", "--", "/bin/bash"]).arg(&script);
        c
    } else {
        let mut c = Command::new("/bin/bash");
        c.arg(&script);
        c
    };
    std::fs::set_permissions(
        bin.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    cmd.env_clear().env("PATH", bin.path()).env("HOME", "/tmp");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_normal_user_is_told_every_missing_package_at_once() {
    // No cc on PATH, and server binaries looked for where there are none.
    let (code, stderr) = setup_with(
        &["id", "ls", "grep"],
        &[("PGSHIFT_PG_BIN", "/nonexistent/pg/bin")],
    );
    assert_eq!(code, 1, "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("install them with"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.contains("--no-install-recommends")
            && line.contains("build-essential")
            && line.contains("postgresql"),
        "{stderr}"
    );
}
