//! The Kubernetes aggregator as a client: it reaches an APIService over TLS with a front-proxy
//! client certificate, signed by the cluster's request-header CA (the
//! `extension-apiserver-authentication` ConfigMap's `requestheader-client-ca-file`) and named
//! by one of its `requestheader-allowed-names`. The TLS layer verifies the chain against
//! `server.front_proxy_ca_file`; this module reads the verified certificate's common name
//! ([`PeerCert`], put in each request's extensions), and [`crate::auth`] grants the `scaling`
//! scope to an allowed name.

/// The verified client certificate of a connection, if it presented one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// Its subject's common name.
    pub common_name: Option<String>,
}

impl PeerCert {
    /// The identity of a certificate (DER) that the TLS layer verified.
    pub fn of(der: &[u8]) -> Self {
        Self {
            common_name: subject_common_name(der),
        }
    }
}

/// One DER element: its tag, contents and what follows it.
fn element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| a << 8 | b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The subject's common name (OID 2.5.4.3) of an X.509 certificate in DER.
pub fn subject_common_name(der: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    const VERSION: u8 = 0xa0;
    const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
    let (SEQUENCE, cert, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    // [version] serial signature issuer validity subject …
    let (tag, _, mut rest) = element(tbs)?;
    if tag == VERSION {
        rest = element(rest)?.2;
    }
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, mut rdns, _) = element(rest)? else {
        return None;
    };
    while !rdns.is_empty() {
        let (_, mut set, next) = element(rdns)?;
        rdns = next;
        while !set.is_empty() {
            let (_, pair, next) = element(set)?;
            set = next;
            let (0x06, oid, value) = element(pair)? else {
                continue;
            };
            if oid == COMMON_NAME {
                let (_, text, _) = element(value)?;
                return String::from_utf8(text.to_vec()).ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.extend([0x82, (content.len() >> 8) as u8, content.len() as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    /// The skeleton of a certificate whose subject is `O=system:masters, CN=<cn>`.
    fn cert(cn: &str, with_version: bool) -> Vec<u8> {
        let attr = |oid: &[u8], v: &str| {
            tlv(
                0x31,
                &tlv(0x30, &[tlv(0x06, oid), tlv(0x0c, v.as_bytes())].concat()),
            )
        };
        let subject = tlv(
            0x30,
            &[
                attr(&[0x55, 0x04, 0x0a], "system:masters"),
                attr(&[0x55, 0x04, 0x03], cn),
            ]
            .concat(),
        );
        let mut tbs = Vec::new();
        if with_version {
            tbs.extend(tlv(0xa0, &tlv(0x02, &[2])));
        }
        tbs.extend(tlv(0x02, &[0x01; 20]));
        tbs.extend(tlv(0x30, &tlv(0x06, &[0x2a, 0x86, 0x48])));
        tbs.extend(tlv(0x30, &attr(&[0x55, 0x04, 0x03], "issuer-ca")));
        tbs.extend(tlv(
            0x30,
            &[tlv(0x17, b"260101000000Z"), tlv(0x17, b"260102000000Z")].concat(),
        ));
        tbs.extend(subject);
        tbs.extend(tlv(0x30, &[0u8; 200]));
        tlv(
            0x30,
            &[tlv(0x30, &tbs), tlv(0x30, &[0; 4]), tlv(0x03, &[0; 8])].concat(),
        )
    }

    #[test]
    fn reads_the_subject_common_name_not_the_issuers() {
        assert_eq!(
            subject_common_name(&cert("front-proxy-client", true)).as_deref(),
            Some("front-proxy-client")
        );
        assert_eq!(
            subject_common_name(&cert("v1", false)).as_deref(),
            Some("v1")
        );
    }

    #[test]
    fn garbage_has_no_name() {
        assert_eq!(subject_common_name(b""), None);
        assert_eq!(subject_common_name(&[0x30, 0x82, 0xff]), None);
        assert_eq!(subject_common_name(&[0x30, 0x03, 0x02, 0x01, 0x01]), None);
        let c = cert("x", true);
        for cut in 0..c.len() {
            let _ = subject_common_name(&c[..cut]);
        }
    }
}
