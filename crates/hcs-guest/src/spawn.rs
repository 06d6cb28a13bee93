//! Checking a `CreateProcess` request before anything is made: argv, environment, working
//! directory, user (via `/etc/passwd` and `/etc/group`), and the program looked up in
//! `PATH`, each failure with the HRESULT the host expects.

use crate::error::Error;
use hcs_guest_protocol::{CreateProcess, ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, E_INVALIDARG};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// `PATH` when the request's environment has none.
pub const DEFAULT_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// A checked request: what to execute, where, and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The resolved program (joined to `cwd` when relative).
    pub program: PathBuf,
    /// The working directory.
    pub cwd: PathBuf,
    /// `(uid, gid)` when a user was given.
    pub user: Option<(u32, u32)>,
}

/// Checks `request` and resolves its program and user.
pub fn plan(request: &CreateProcess) -> Result<Plan, Error> {
    let argv0 = match request.argv.first() {
        Some(a) if !a.is_empty() => a,
        _ => return Err(Error::request(E_INVALIDARG, "argv is empty")),
    };
    if request.argv.iter().any(|a| a.contains('\0')) {
        return Err(Error::request(E_INVALIDARG, "argv contains a NUL byte"));
    }
    for (key, value) in &request.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
            return Err(Error::request(
                E_INVALIDARG,
                format!("bad environment variable name or value: {key:?}"),
            ));
        }
    }
    let cwd = PathBuf::from(request.cwd.as_deref().unwrap_or("/"));
    if cwd.as_os_str().is_empty() || request.cwd.as_deref().is_some_and(|c| c.contains('\0')) {
        return Err(Error::request(E_INVALIDARG, "bad working directory"));
    }
    match std::fs::metadata(&cwd) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::request(
                E_INVALIDARG,
                format!("working directory {} is not a directory", cwd.display()),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::request(
                ERROR_FILE_NOT_FOUND,
                format!("working directory {} does not exist", cwd.display()),
            ))
        }
        Err(e) => {
            return Err(Error::request(
                ERROR_ACCESS_DENIED,
                format!("working directory {}: {e}", cwd.display()),
            ))
        }
    }
    let user = match request.user.as_deref() {
        None => None,
        Some(spec) => Some(lookup_user(spec, Path::new("/etc"))?),
    };
    let path = request
        .env
        .get("PATH")
        .map(String::as_str)
        .unwrap_or(DEFAULT_PATH);
    let program = resolve_program(argv0, path, &cwd)?;
    Ok(Plan { program, cwd, user })
}

/// Finds `argv0` as `execvp` would: as a path when it has a `/`, else in each `PATH`
/// directory. Not found is `ERROR_FILE_NOT_FOUND`; found but not executable (and nothing
/// executable later in `PATH`) is `ERROR_ACCESS_DENIED`.
pub fn resolve_program(argv0: &str, path: &str, cwd: &Path) -> Result<PathBuf, Error> {
    let candidates: Vec<PathBuf> = if argv0.contains('/') {
        vec![cwd.join(argv0)]
    } else {
        path.split(':')
            .map(|dir| cwd.join(if dir.is_empty() { "." } else { dir }).join(argv0))
            .collect()
    };
    let mut denied = None;
    for candidate in candidates {
        match std::fs::metadata(&candidate) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Ok(candidate),
            Ok(_) => denied = denied.or(Some(candidate)),
            Err(_) => {}
        }
    }
    match denied {
        Some(p) => Err(Error::request(
            ERROR_ACCESS_DENIED,
            format!("{} is not an executable file", p.display()),
        )),
        None if argv0.contains('/') => Err(Error::request(
            ERROR_FILE_NOT_FOUND,
            format!("program {argv0} does not exist"),
        )),
        None => Err(Error::request(
            ERROR_FILE_NOT_FOUND,
            format!("program {argv0} not found in PATH {path}"),
        )),
    }
}

/// Resolves `name`, `uid`, `name:group` or `uid:gid` against `<etc>/passwd` and
/// `<etc>/group`. A numeric uid with no passwd entry runs with gid 0 (as Docker does).
pub fn lookup_user(spec: &str, etc: &Path) -> Result<(u32, u32), Error> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap_or_default();
    // name:x:uid:gid:...
    let entries: Vec<(&str, u32, u32)> = passwd
        .lines()
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            let _password = f.next()?;
            let uid = f.next()?.parse().ok()?;
            let gid = f.next()?.parse().ok()?;
            Some((name, uid, gid))
        })
        .collect();
    let (uid, mut gid) = if let Ok(uid) = user.parse::<u32>() {
        let gid = entries
            .iter()
            .find(|e| e.1 == uid)
            .map(|e| e.2)
            .unwrap_or(0);
        (uid, gid)
    } else {
        match entries.iter().find(|e| e.0 == user) {
            Some(e) => (e.1, e.2),
            None => {
                return Err(Error::request(
                    E_INVALIDARG,
                    format!("no user named {user:?} in /etc/passwd"),
                ))
            }
        }
    };
    if let Some(group) = group {
        gid = match group.parse::<u32>() {
            Ok(g) => g,
            Err(_) => {
                let groups = std::fs::read_to_string(etc.join("group")).unwrap_or_default();
                groups
                    .lines()
                    .find_map(|line| {
                        let mut f = line.split(':');
                        (f.next()? == group).then_some(())?;
                        f.next()?;
                        f.next()?.parse().ok()
                    })
                    .ok_or_else(|| {
                        Error::request(
                            E_INVALIDARG,
                            format!("no group named {group:?} in /etc/group"),
                        )
                    })?
            }
        };
    }
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: Result<impl std::fmt::Debug, Error>) -> i32 {
        result.expect_err("should fail").hresult()
    }

    #[test]
    fn programs_are_found_in_path_or_refused_with_the_right_code() {
        let dir = std::env::temp_dir().join(format!("hcs-guest-spawn-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a")).expect("mkdir");
        std::fs::create_dir_all(dir.join("b")).expect("mkdir");
        std::fs::write(dir.join("a/tool"), "x").expect("write");
        std::fs::write(dir.join("b/tool"), "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(dir.join("b/tool"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let path = format!("{}:{}", dir.join("a").display(), dir.join("b").display());
        assert_eq!(
            resolve_program("tool", &path, Path::new("/")).expect("found"),
            dir.join("b/tool")
        );
        let only_a = dir.join("a").display().to_string();
        assert_eq!(
            code(resolve_program("tool", &only_a, Path::new("/"))),
            ERROR_ACCESS_DENIED
        );
        assert_eq!(
            code(resolve_program("nope", &path, Path::new("/"))),
            ERROR_FILE_NOT_FOUND
        );
        assert_eq!(
            resolve_program("./b/tool", "", &dir).expect("relative"),
            dir.join("./b/tool")
        );
        assert_eq!(
            code(resolve_program("/nonexistent/x", &path, Path::new("/"))),
            ERROR_FILE_NOT_FOUND
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn users_resolve_by_name_number_and_group() {
        let dir = std::env::temp_dir().join(format!("hcs-guest-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1001::/home/bob:/bin/sh\nbad line\n",
        )
        .expect("write");
        std::fs::write(dir.join("group"), "root:x:0:\nstaff:x:50:\n").expect("write");
        assert_eq!(lookup_user("bob", &dir).expect("bob"), (1000, 1001));
        assert_eq!(lookup_user("1000", &dir).expect("1000"), (1000, 1001));
        assert_eq!(lookup_user("4242", &dir).expect("4242"), (4242, 0));
        assert_eq!(
            lookup_user("bob:staff", &dir).expect("bob:staff"),
            (1000, 50)
        );
        assert_eq!(lookup_user("0:7", &dir).expect("0:7"), (0, 7));
        assert_eq!(code(lookup_user("alice", &dir)), E_INVALIDARG);
        assert_eq!(code(lookup_user("bob:nogroup", &dir)), E_INVALIDARG);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn malformed_requests_are_invalid_arguments() {
        assert_eq!(code(plan(&CreateProcess::default())), E_INVALIDARG);
        let nul = CreateProcess {
            argv: vec!["a\0b".into()],
            ..Default::default()
        };
        assert_eq!(code(plan(&nul)), E_INVALIDARG);
        let missing_cwd = CreateProcess {
            argv: vec!["sh".into()],
            cwd: Some("/nonexistent/dir".into()),
            ..Default::default()
        };
        let err = plan(&missing_cwd).expect_err("missing cwd");
        assert_eq!(err.hresult(), ERROR_FILE_NOT_FOUND);
        assert!(err.to_string().contains("/nonexistent/dir"));
    }
}
