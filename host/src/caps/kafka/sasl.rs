//! SASL client messages: PLAIN (RFC 4616) and SCRAM-SHA-256/512 (RFC 5802, RFC 7677), as the
//! host authenticates to Kafka with credentials the component never sees. Pure functions of
//! the exchange; `conn.rs` carries them in SaslAuthenticate requests.

use super::endpoint::Mechanism;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// The most PBKDF2 rounds a server may ask for (Kafka's default is 4096): more only burns
/// the host's CPU.
const MAX_ITERATIONS: u32 = 100_000;

/// PLAIN's one message: no authorization identity, the user, the password.
pub fn plain(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

/// One SCRAM exchange, from the client's first message to the check of the server's
/// signature.
pub struct Scram {
    mechanism: Mechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

impl Scram {
    /// Starts an exchange with a fresh random nonce.
    pub fn new(mechanism: Mechanism, user: &str, password: &str) -> Result<Scram, String> {
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw).map_err(|e| format!("no randomness for the SCRAM nonce: {e}"))?;
        Ok(Scram::with_nonce(
            mechanism,
            user,
            password,
            &B64.encode(raw),
        ))
    }

    fn with_nonce(mechanism: Mechanism, user: &str, password: &str, nonce: &str) -> Scram {
        let user = user.replace('=', "=3D").replace(',', "=2C");
        Scram {
            mechanism,
            password: password.to_string(),
            client_first_bare: format!("n={user},r={nonce}"),
            nonce: nonce.to_string(),
            server_signature: None,
        }
    }

    /// `client-first-message`: no channel binding, no authorization identity.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// `client-final-message` for the server's first message (nonce, salt, iterations).
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(server_first)
            .map_err(|_| "the server's SCRAM message is not text".to_string())?;
        let attr = |k: &str| {
            text.split(',')
                .find_map(|a| a.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
        };
        if text.starts_with("m=") {
            return Err("the server requires a SCRAM extension the host does not know".into());
        }
        let nonce = attr("r").ok_or("the server's SCRAM message has no nonce")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err("the server's SCRAM nonce does not extend the client's".into());
        }
        let salt = attr("s")
            .and_then(|s| B64.decode(s).ok())
            .ok_or("the server's SCRAM salt is missing or not base64")?;
        let iterations: u32 = attr("i")
            .and_then(|i| i.parse().ok())
            .ok_or("the server's SCRAM iteration count is missing")?;
        if !(1..=MAX_ITERATIONS).contains(&iterations) {
            return Err(format!(
                "the server asks for {iterations} SCRAM iterations (the host allows 1 to {MAX_ITERATIONS})"
            ));
        }
        let salted = hi(self.mechanism, self.password.as_bytes(), &salt, iterations);
        let client_key = hmac(self.mechanism, &salted, b"Client Key");
        let stored_key = hash(self.mechanism, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let client_signature = hmac(self.mechanism, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(self.mechanism, &salted, b"Server Key");
        self.server_signature = Some(hmac(self.mechanism, &server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server's final message proves it knows the credentials too.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(server_final);
        if let Some(e) = text.strip_prefix("e=") {
            return Err(format!("the server ended the SCRAM exchange: {e}"));
        }
        let given = text
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v.split(',').next().unwrap_or("")).ok())
            .ok_or("the server's final SCRAM message has no signature")?;
        let expected = self
            .server_signature
            .as_ref()
            .ok_or("the SCRAM exchange is not at its last step")?;
        let differ = given.len() != expected.len()
            || given
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                != 0;
        if differ {
            return Err(
                "the server's SCRAM signature is wrong: it does not know these credentials".into(),
            );
        }
        Ok(())
    }
}

fn hmac(m: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    match m {
        Mechanism::ScramSha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        _ => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

fn hash(m: Mechanism, data: &[u8]) -> Vec<u8> {
    match m {
        Mechanism::ScramSha512 => Sha512::digest(data).to_vec(),
        _ => Sha256::digest(data).to_vec(),
    }
}

/// `Hi(password, salt, i)`: PBKDF2 with the mechanism's HMAC, one hash length of output.
fn hi(m: Mechanism, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    match m {
        Mechanism::ScramSha512 => {
            let mut out = [0u8; 64];
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
            out.to_vec()
        }
        _ => {
            let mut out = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
            out.to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_sha256_matches_rfc_7677s_example() {
        // RFC 7677 section 3: user "user", password "pencil", the nonces and salt given there.
        let mut s = Scram::with_nonce(
            Mechanism::ScramSha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        );
        assert_eq!(s.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let fin = s.client_final(server_first).unwrap();
        assert_eq!(
            String::from_utf8(fin).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        s.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(
            s.verify(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .is_err()
        );
        assert!(s.verify(b"e=invalid-proof").is_err());
    }

    #[test]
    fn a_server_that_does_not_extend_the_nonce_or_asks_too_much_is_refused() {
        let mut s = Scram::with_nonce(Mechanism::ScramSha512, "u,=x", "p", "abc");
        assert_eq!(s.client_first(), b"n,,n=u=2C=3Dx,r=abc");
        assert!(s.client_final(b"r=zzz123,s=AAAA,i=4096").is_err());
        assert!(
            s.client_final(b"r=abc,s=AAAA,i=4096").is_err(),
            "not extended"
        );
        assert!(s.client_final(b"r=abcd,s=AAAA,i=100000000").is_err());
        assert!(s.client_final(b"m=ext,r=abcd,s=AAAA,i=4096").is_err());
        assert!(s.client_final(b"r=abcd,s=AAAA,i=4096").is_ok());
        assert!(s.verify(b"v=AAAA").is_err());
        assert_eq!(plain("u", "p"), b"\0u\0p");
    }
}
