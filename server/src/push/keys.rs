//! The server's VAPID key pair (RFC 8292): made once, kept in the data dir readable by its
//! owner only, and the same for as long as the data dir lives, because every browser's
//! subscription is bound to the public key it subscribed with.

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use base64ct::{Base64UrlUnpadded, Encoding};
use web_push_native::jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256KeyPair};

/// The file in the data dir that holds the private key (base64url of its 32 bytes).
const FILE: &str = "vapid.key";

pub struct Keys {
    pub pair: ES256KeyPair,
    /// The public key as browsers take it (`applicationServerKey`, the `k=` of a push's
    /// `Authorization`): the uncompressed point, base64url without padding.
    pub public: String,
}

impl Keys {
    /// The key pair in `data_dir`, made and written (0600) the first time.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<Keys> {
        let path = data_dir.join(FILE);
        let pair = match std::fs::read_to_string(&path) {
            Ok(text) => Base64UrlUnpadded::decode_vec(text.trim())
                .ok()
                .and_then(|raw| ES256KeyPair::from_bytes(&raw).ok())
                .ok_or_else(|| {
                    std::io::Error::other(format!(
                        "{} does not hold a VAPID key (delete it to make a new one; every \
                         device then has to turn notifications on again)",
                        path.display()
                    ))
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pair = ES256KeyPair::generate();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                file.write_all(Base64UrlUnpadded::encode_string(&pair.to_bytes()).as_bytes())?;
                file.sync_all()?;
                pair
            }
            Err(e) => return Err(e),
        };
        let public = Base64UrlUnpadded::encode_string(
            &pair.public_key().public_key().to_bytes_uncompressed(),
        );
        Ok(Keys { pair, public })
    }
}
