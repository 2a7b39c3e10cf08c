//! Certificates for TLS tests, made by the real `openssl` (scripts/test.sh installs it).

use std::path::Path;
use std::process::Command;

/// Runs `openssl` with `args` in `dir`, failing the test with its stderr.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed certificate in `dir`: `<name>.pem`, `<name>.key`, common name `cn`, with more
/// `openssl req` arguments in `extra` (e.g. `-addext subjectAltName=…`).
pub fn self_signed(dir: &Path, name: &str, cn: &str, extra: &[&str]) {
    let subj = format!("/CN={cn}");
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    let mut args = vec![
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subj, "-keyout",
        &key, "-out", &pem,
    ];
    args.extend_from_slice(extra);
    openssl(dir, &args);
}

/// A self-signed CA in `dir`: `<name>.pem`, `<name>.key`, common name `name`.
pub fn ca(dir: &Path, name: &str) {
    self_signed(dir, name, name, &[]);
}

/// `<name>.pem` / `<name>.key` in `dir` with subject `subj` and the extensions `ext` (openssl
/// extfile lines), signed by the CA `by` made with [`ca`].
pub fn signed(dir: &Path, name: &str, subj: &str, ext: &str, by: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).expect("ext");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            subj,
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{by}.pem"),
            "-CAkey",
            &format!("{by}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}
