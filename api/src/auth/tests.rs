use super::*;
use crate::ApiConfig;
use axum::http::HeaderValue;

fn headers(v: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(v).expect("header"),
    );
    h
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn cred(name: &str, scopes: &[Scope]) -> CredentialConfig {
    CredentialConfig {
        name: name.into(),
        scopes: scopes.to_vec(),
        token: None,
        token_file: None,
        username: None,
        password: None,
        password_file: None,
    }
}

fn config() -> ApiConfig {
    ApiConfig {
        credentials: vec![
            CredentialConfig {
                token: Some("w-token".into()),
                ..cred("prometheus", &[Scope::Write])
            },
            CredentialConfig {
                username: Some("grafana".into()),
                password: Some("pa:ss".into()),
                ..cred("grafana", &[Scope::Read])
            },
        ],
        scaling_token: Some("hpa".into()),
        ..ApiConfig::default()
    }
}

#[test]
fn bearer_and_basic_credentials_get_exactly_their_scopes() {
    let a = config().authenticator().expect("loads");
    assert!(a.enabled());
    // Scheme in any case, surrounding blanks ignored.
    for v in ["Bearer w-token", "bearer w-token", "BEARER  w-token "] {
        assert_eq!(
            a.check(&headers(v), Scope::Write),
            Ok(Some("prometheus".into())),
            "{v}"
        );
    }
    assert_eq!(
        a.check(&headers("Bearer w-token"), Scope::Read),
        Err(Denied::Forbidden {
            name: "prometheus".into()
        })
    );
    // A password may hold a colon: only the first one splits.
    assert_eq!(
        a.check(&headers(&basic("grafana", "pa:ss")), Scope::Read),
        Ok(Some("grafana".into()))
    );
    assert_eq!(
        a.check(
            &headers(
                &basic("grafana", "pa:ss")
                    .to_lowercase()
                    .replacen("basic", "BaSiC", 1)
            ),
            Scope::Read
        ),
        Err(Denied::Missing),
        "the base64 itself is case-sensitive: lower-cased, it is not basic auth any more"
    );
    assert_eq!(
        a.check(&headers(&basic("grafana", "wrong")), Scope::Read),
        Err(Denied::Invalid)
    );
    assert_eq!(
        a.check(&headers(&basic("other", "pa:ss")), Scope::Read),
        Err(Denied::Invalid)
    );
    // A reader may read the scaling routes; the scaling token only those.
    assert!(
        a.check(&headers(&basic("grafana", "pa:ss")), Scope::Scaling)
            .is_ok()
    );
    assert!(a.check(&headers("Bearer hpa"), Scope::Scaling).is_ok());
    assert!(matches!(
        a.check(&headers("Bearer hpa"), Scope::Read),
        Err(Denied::Forbidden { .. })
    ));
    // Nothing presented, an unknown scheme, a token that is a prefix of a real one.
    assert_eq!(
        a.check(&HeaderMap::new(), Scope::Read),
        Err(Denied::Missing)
    );
    assert_eq!(
        a.check(&headers("Digest w-token"), Scope::Write),
        Err(Denied::Missing)
    );
    assert_eq!(
        a.check(&headers("Bearer w-toke"), Scope::Write),
        Err(Denied::Invalid)
    );
    assert_eq!(
        a.check(&headers("Bearer w-token2"), Scope::Write),
        Err(Denied::Invalid)
    );
}

#[test]
fn no_credentials_means_open_and_open_scopes_stay_open() {
    let a = ApiConfig::default().authenticator().expect("loads");
    assert!(!a.enabled());
    assert_eq!(a.check(&HeaderMap::new(), Scope::Write), Ok(None));
    let a = ApiConfig {
        unauthenticated_scopes: vec![Scope::Scaling],
        ..config()
    }
    .authenticator()
    .expect("loads");
    assert_eq!(a.check(&HeaderMap::new(), Scope::Scaling), Ok(None));
    assert_eq!(
        a.check(&HeaderMap::new(), Scope::Read),
        Err(Denied::Missing)
    );
}

#[test]
fn secret_files_are_read_and_reloaded_when_they_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, "first\n").expect("write");
    let cfg = ApiConfig {
        credentials: vec![CredentialConfig {
            token_file: Some(file.clone()),
            ..cred("from-file", &[Scope::Write])
        }],
        ..ApiConfig::default()
    };
    let a = cfg.authenticator().expect("loads");
    assert!(a.check(&headers("Bearer first"), Scope::Write).is_ok());
    assert_eq!(a.reload(), (vec![], vec![]), "nothing changed");
    std::fs::write(&file, "second").expect("write");
    assert_eq!(a.reload().0, vec!["from-file".to_string()]);
    assert_eq!(
        a.check(&headers("Bearer first"), Scope::Write),
        Err(Denied::Invalid)
    );
    assert!(a.check(&headers("Bearer second"), Scope::Write).is_ok());
    // A file gone keeps the previous secret, and says why.
    std::fs::remove_file(&file).expect("rm");
    let (changed, problems) = a.reload();
    assert!(changed.is_empty());
    assert!(problems[0].contains("from-file"), "{problems:?}");
    assert!(a.check(&headers("Bearer second"), Scope::Write).is_ok());
    // An empty secret is refused at start, and so is a file too large to be one.
    std::fs::write(&file, " \n").expect("write");
    let err = cfg.authenticator().expect_err("empty").to_string();
    assert!(err.contains("empty"), "{err}");
    std::fs::write(&file, vec![b'x'; 70_000]).expect("write");
    let err = cfg.authenticator().expect_err("too large").to_string();
    assert!(
        err.contains("larger than 65536 bytes") && err.contains("from-file"),
        "{err}"
    );
}

#[test]
fn entries_are_validated_and_secrets_never_debug_printed() {
    let mut problems = Vec::new();
    cred("none", &[Scope::Read]).validate("c", &mut problems);
    CredentialConfig {
        token: Some("t".into()),
        username: Some("u".into()),
        password: Some("p".into()),
        ..cred("both", &[])
    }
    .validate("d", &mut problems);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].starts_with("c: give a bearer token"));
    assert!(problems[1].starts_with("d.scopes"));
    assert!(problems[2].starts_with("d: give exactly one"));
    let shown = format!("{:?}", config());
    assert!(!shown.contains("w-token") && !shown.contains("pa:ss") && !shown.contains("hpa"));
    assert!(shown.contains("<redacted>"));
}
