//! The first admin token: written to `DATA_DIR/admin.token` (mode 0600)
//! when a master with `--auth` holds no token at all, so whoever runs the
//! master can make the others (`tmctl token create`).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use taskmaster_proto::v1::Role;

use super::credentials;
use crate::core::tokens::Token;
use crate::runtime::Master;

/// The bootstrap token's name.
pub const ADMIN_NAME: &str = "admin";
/// Its file in the data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Makes the bootstrap admin token if the master holds none, writes it to
/// the data dir and returns the file's path (None: tokens exist). The file
/// is written (and synced) before the token is journaled: a crash between
/// leaves a file whose token the next start replaces, never a token no
/// one can read. Call before serving (it writes a file).
pub async fn admin_token(master: &Master, data_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    if !master.tokens().await?.is_empty() {
        return Ok(None);
    }
    let token = credentials::new_token();
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let writing = path.clone();
    let secret = token.clone();
    tokio::task::spawn_blocking(move || write_private(&writing, &secret)).await??;
    master
        .create_token(Token {
            name: ADMIN_NAME.into(),
            role: Role::Admin,
            sha256: credentials::sha256(&token),
            created_unix_ms: master.unix_ms(),
            expires_unix_ms: 0,
        })
        .await?;
    Ok(Some(path))
}

/// Writes `text` to `path`, readable by its owner only, replacing it
/// whole (a temporary file renamed over it).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("token.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(format!("{text}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
