//! Long-term identities on the desktop: one per user name, in the state directory
//! ([`crate::state`]), and the `seguro id` command.
//!
//! An identity is an X25519 key pair (what v1 publishes; fingerprints and safety codes
//! describe it) and an Ed25519 signing key pair (protocol v2), made and stored
//! together (`seguro_core::identity::Identity`). `seguro chat` uses the stored identity,
//! making it on first use, so a restarted client presents the same key and its peers
//! see no key change.
//!
//! Backing up and moving: `seguro id export USER FILE` writes the identity and the
//! contact list into one file (mode 0600; it holds the secret keys: keep it as safe as
//! the identity), and `seguro id import FILE` installs it on the other machine.
//! Copying the user's directory (`users/<user>/` under the state directory) with its
//! permissions (`cp -a`, `tar`, `rsync -a`) works too.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use seguro_core::e2ee::KeyPair;
use seguro_core::identity::Identity;
use seguro_core::store::{Reader, StoreError, Writer, file_type, kind};

use crate::cli::{IdArgs, IdCommand};
use crate::exit;
use crate::state::{self, StateDir, StateError, TrustFile};

/// Now, in Unix seconds.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn check_name(user: &str) -> Result<(), StateError> {
    seguro_core::msg::validate_name(user).map_err(|err| StateError::BadName {
        user: user.to_owned(),
        err,
    })
}

/// Reads `user`'s identity; `None` if there is none.
pub fn load(dir: &StateDir, user: &str) -> Result<Option<Identity>, StateError> {
    check_name(user)?;
    let path = dir.identity_path(user);
    let Some(data) = state::read_private(&path, user, true)? else {
        return Ok(None);
    };
    let data = zeroize::Zeroizing::new(data);
    let (id, name) = Identity::decode_file(&data).map_err(|err| StateError::Corrupt {
        path: path.clone(),
        err,
        user: user.to_owned(),
        identity: true,
    })?;
    if name.as_str() != user {
        return Err(StateError::WrongUser {
            path,
            found: name.as_str().to_owned(),
            expected: user.to_owned(),
        });
    }
    Ok(Some(id))
}

fn write_identity(dir: &StateDir, user: &str, id: &Identity) -> Result<PathBuf, StateError> {
    let path = dir.identity_path(user);
    let data =
        state::encode_vec(|buf| id.encode_file(user, buf)).map_err(|err| StateError::Corrupt {
            path: path.clone(),
            err,
            user: user.to_owned(),
            identity: true,
        })?;
    state::write_atomic(&path, &data)?;
    Ok(path)
}

/// Reads `user`'s identity, making and storing a new one if there is none; the flag
/// says whether it was made now.
pub fn load_or_create(dir: &StateDir, user: &str) -> Result<(Identity, bool), StateError> {
    if let Some(id) = load(dir, user)? {
        return Ok((id, false));
    }
    let _lock = dir.lock(user)?;
    // Another process may have made it while we waited for the lock.
    if let Some(id) = load(dir, user)? {
        return Ok((id, false));
    }
    let id = Identity::generate(&mut rand_core::OsRng, now());
    write_identity(dir, user, &id)?;
    Ok((id, true))
}

/// Makes a new identity for `user`; refuses if there is one.
pub fn create(dir: &StateDir, user: &str) -> Result<Identity, StateError> {
    check_name(user)?;
    let _lock = dir.lock(user)?;
    let path = dir.identity_path(user);
    if path.exists() {
        return Err(StateError::Exists {
            path,
            user: user.to_owned(),
        });
    }
    let id = Identity::generate(&mut rand_core::OsRng, now());
    write_identity(dir, user, &id)?;
    Ok(id)
}

/// Replaces `user`'s identity by a new one; returns the old and the new.
pub fn rotate(dir: &StateDir, user: &str) -> Result<(Identity, Identity), StateError> {
    let _lock = dir.lock(user)?;
    let old = load(dir, user)?.ok_or_else(|| StateError::NoIdentity {
        user: user.to_owned(),
        path: dir.identity_path(user),
    })?;
    let new = Identity::generate(&mut rand_core::OsRng, now());
    write_identity(dir, user, &new)?;
    Ok((old, new))
}

/// Writes `user`'s identity and contacts to `file` (a new file, mode 0600).
pub fn export(dir: &StateDir, user: &str, file: &Path) -> Result<(), StateError> {
    let id = load(dir, user)?.ok_or_else(|| StateError::NoIdentity {
        user: user.to_owned(),
        path: dir.identity_path(user),
    })?;
    let trust = TrustFile::load(dir, user)?;
    let data = state::encode_vec(|buf| {
        let mut w = Writer::new(buf, file_type::BUNDLE);
        id.write(user, &mut w);
        trust.write(&mut w);
        w.finish()
    })
    .map_err(|err| StateError::Corrupt {
        path: file.to_owned(),
        err,
        user: user.to_owned(),
        identity: true,
    })?;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(file).map_err(|err| {
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            StateError::Unusable {
                path: file.to_owned(),
                why: "already exists; choose a new file name".into(),
            }
        } else {
            StateError::Io {
                path: file.to_owned(),
                op: "create",
                err,
            }
        }
    })?;
    f.write_all(&data)
        .and_then(|()| f.sync_all())
        .map_err(|err| StateError::Io {
            path: file.to_owned(),
            op: "write",
            err,
        })?;
    Ok(())
}

/// Installs an export bundle; returns the user name and identity. Refuses to replace
/// an existing identity unless `force`.
pub fn import(dir: &StateDir, file: &Path, force: bool) -> Result<(String, Identity), StateError> {
    let data = match std::fs::read(file) {
        Ok(d) => zeroize::Zeroizing::new(d),
        Err(err) => {
            return Err(StateError::Io {
                path: file.to_owned(),
                op: "read",
                err,
            });
        }
    };
    let corrupt = |err: StoreError| StateError::Corrupt {
        path: file.to_owned(),
        err,
        user: "?".into(),
        identity: true,
    };
    let mut identity = None;
    {
        let mut r = Reader::new(&data, file_type::BUNDLE).map_err(|err| match err {
            StoreError::WrongFileType { .. } => StateError::Unusable {
                path: file.to_owned(),
                why: "not an export bundle (make one with `seguro id export USER FILE`)".into(),
            },
            e => corrupt(e),
        })?;
        while let Some(rec) = r.next().map_err(corrupt)? {
            if rec.kind == kind::IDENTITY {
                if identity.is_some() {
                    return Err(corrupt(StoreError::Duplicate {
                        kind: kind::IDENTITY,
                    }));
                }
                identity = Some(Identity::from_record(&rec).map_err(corrupt)?);
            }
        }
    }
    let (id, name) = identity.ok_or_else(|| {
        corrupt(StoreError::Missing {
            kind: kind::IDENTITY,
        })
    })?;
    let mut trust =
        TrustFile::decode(&data, file_type::BUNDLE, &[kind::IDENTITY]).map_err(corrupt)?;
    let user = name.as_str().to_owned();
    check_name(&user)?;
    let _lock = dir.lock(&user)?;
    let path = dir.identity_path(&user);
    if !force && path.exists() {
        return Err(StateError::Exists { path, user });
    }
    write_identity(dir, &user, &id)?;
    trust.save_locked(dir, &user)?;
    Ok((user, id))
}

/// The key pair `seguro chat` uses for `user`, and a note to show if it was made now.
pub fn for_chat(
    user: &str,
    state_dir: Option<&Path>,
) -> Result<(KeyPair, Option<String>), StateError> {
    identity_for_chat(user, state_dir).map(|(id, note)| (id.into_x25519(), note))
}

/// [`for_chat`], with the whole identity (both key pairs, for protocol v2).
pub fn identity_for_chat(
    user: &str,
    state_dir: Option<&Path>,
) -> Result<(Identity, Option<String>), StateError> {
    check_name(user)?;
    let dir = StateDir::locate(state_dir)?;
    let (id, created) = load_or_create(&dir, user)?;
    let note = created.then(|| {
        format!(
            "created a new identity for {user}: fp {} (stored in {}; back it up with `seguro \
             id export {user} FILE`)",
            id.fingerprint(),
            dir.user_dir(user).display()
        )
    });
    Ok((id, note))
}

fn date(ts: u64) -> String {
    match i64::try_from(ts)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
    {
        Some(t) if ts > 0 => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        _ => "unknown".into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn show(dir: &StateDir, user: &str) -> Result<(), StateError> {
    let id = load(dir, user)?.ok_or_else(|| StateError::NoIdentity {
        user: user.to_owned(),
        path: dir.identity_path(user),
    })?;
    let trust = TrustFile::load(dir, user)?;
    let code = id.safety_code();
    let groups: Vec<&str> = code.groups().collect();
    println!("identity of {user}");
    println!("  fingerprint  {}", id.fingerprint());
    for (i, row) in groups.chunks(4).enumerate() {
        let label = if i == 0 { "safety code" } else { "" };
        println!("  {label:<11}  {}", row.join(" "));
    }
    println!(
        "  public key   {} (X25519, what peers see; for a private server's allowed-keys)",
        <base64ct::Base64 as base64ct::Encoding>::encode_string(&id.public())
    );
    println!(
        "  signing key  {} (Ed25519, protocol v2)",
        hex(&id.ed25519_public())
    );
    println!("  created      {}", date(id.created()));
    let verified = trust.store.iter().filter(|c| c.verified()).count();
    println!(
        "  contacts     {} known, {verified} verified",
        trust.store.len()
    );
    println!("  stored in    {}", dir.user_dir(user).display());
    println!(
        "Peers compare the fingerprint or, better, the safety code (e.g. read aloud) with \
         what their `/fp {user}` shows."
    );
    Ok(())
}

fn list(dir: &StateDir) -> Result<(), StateError> {
    let users = dir.users()?;
    if users.is_empty() {
        println!(
            "no identities in {} yet (`seguro chat USER ...` makes one on first use)",
            dir.root().display()
        );
        return Ok(());
    }
    println!("identities in {}:", dir.root().display());
    for u in users {
        match load(dir, &u) {
            Ok(Some(id)) => println!("  {u}  fp {}", id.fingerprint()),
            Ok(None) => println!("  {u}  (no identity file)"),
            Err(e) => println!("  {u}  unusable: {e}"),
        }
    }
    println!("`seguro id show USER` shows the safety code.");
    Ok(())
}

/// Asks the user to type `user` to confirm; false without a terminal.
fn confirm(user: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    print!("Type the user name ({user}) to confirm: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    line.trim() == user
}

fn rotate_cmd(dir: &StateDir, user: &str, yes: bool) -> Result<i32, StateError> {
    let Some(old) = load(dir, user)? else {
        return Err(StateError::NoIdentity {
            user: user.to_owned(),
            path: dir.identity_path(user),
        });
    };
    eprintln!(
        "Rotating replaces the identity of {user} (fp {}) by a new one. Every peer that knows \
         {user} will see a KEY CHANGED warning, and contacts who verified {user} must verify \
         again. The old key is deleted: messages sent to it can no longer be read. Do this \
         only if the old key may be compromised, and tell your contacts beforehand.",
        old.fingerprint()
    );
    drop(old);
    if !yes && !confirm(user) {
        eprintln!("error: not confirmed; nothing changed (to rotate without a prompt, pass --yes)");
        return Ok(exit::ERROR);
    }
    let (old, new) = rotate(dir, user)?;
    println!(
        "rotated the identity of {user}: fp was {}, now {}",
        old.fingerprint(),
        new.fingerprint()
    );
    println!("new safety code: {}", new.safety_code());
    Ok(exit::OK)
}

fn run_inner(a: IdArgs) -> Result<i32, StateError> {
    match a.command {
        IdCommand::Show { user, state } => {
            let dir = StateDir::locate(state.state_dir.as_deref())?;
            match user {
                Some(u) => show(&dir, &u)?,
                None => list(&dir)?,
            }
            Ok(exit::OK)
        }
        IdCommand::Create { user, state } => {
            let dir = StateDir::locate(state.state_dir.as_deref())?;
            let id = create(&dir, &user)?;
            println!(
                "created the identity of {user}: fp {} (in {})",
                id.fingerprint(),
                dir.user_dir(&user).display()
            );
            Ok(exit::OK)
        }
        IdCommand::Rotate { user, yes, state } => {
            let dir = StateDir::locate(state.state_dir.as_deref())?;
            rotate_cmd(&dir, &user, yes)
        }
        IdCommand::Export { user, file, state } => {
            let dir = StateDir::locate(state.state_dir.as_deref())?;
            export(&dir, &user, &file)?;
            println!(
                "wrote the identity and contacts of {user} to {} (mode 0600). It holds the \
                 secret keys: keep it safe; `seguro id import {}` installs it.",
                file.display(),
                file.display()
            );
            Ok(exit::OK)
        }
        IdCommand::Import { file, force, state } => {
            let dir = StateDir::locate(state.state_dir.as_deref())?;
            let (user, id) = import(&dir, &file, force)?;
            println!(
                "imported the identity of {user}: fp {} (into {})",
                id.fingerprint(),
                dir.user_dir(&user).display()
            );
            Ok(exit::OK)
        }
    }
}

/// Runs `seguro id ...`; returns the exit code.
pub fn run(a: IdArgs) -> i32 {
    match run_inner(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
