//! The Kubernetes manifests in `deploy/kubernetes` parse, and their names, ports and paths agree
//! with each other, with the binary's defaults and with the configuration they ship (which the
//! real binary accepts).

mod common;

use serde_yaml::Value;

fn docs(file: &str) -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes/").to_owned() + file;
    let text = std::fs::read_to_string(&path).expect("manifest readable");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

#[test]
fn manifests_agree_with_each_other_and_with_the_binary() {
    let all = docs("aiops.yaml");
    for d in &all {
        assert!(
            d["apiVersion"].is_string() && d["kind"].is_string(),
            "{d:?}"
        );
    }

    // The shipped configuration is valid for the real binary.
    let config = s(&find(&all, "ConfigMap", "aiops-config")["data"]["aiops.toml"]).to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("aiops.toml");
    std::fs::write(&path, &config).expect("write");
    common::succeeded(common::aiops().arg("check-config").arg(&path));
    let toml: toml::Value = toml::from_str(&config).expect("TOML");
    let port_of = |key: &str| -> i64 {
        let addr = toml["server"][key].as_str().expect("address");
        addr.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    };
    // The binary's default port is the HTTP port everywhere.
    assert_eq!(port_of("listen"), 9201);

    let deploy = find(&all, "Deployment", "aiops");
    let pod = &deploy["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let ports = container["ports"].as_sequence().expect("ports");
    let container_port = |name: &str| {
        ports
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_i64())
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    assert_eq!(container_port("http"), port_of("listen"));
    assert_eq!(container_port("https"), port_of("tls_listen"));
    assert_eq!(
        deploy["spec"]["selector"]["matchLabels"],
        deploy["spec"]["template"]["metadata"]["labels"]
    );

    // The config file, certificate and data directory are where the config says.
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(s)
        .collect();
    let config_path = args[args
        .iter()
        .position(|a| *a == "--config")
        .expect("--config")
        + 1];
    let mounts = container["volumeMounts"].as_sequence().expect("mounts");
    let mounted = |file: &str| {
        mounts.iter().any(|m| {
            file.starts_with(&format!("{}/", s(&m["mountPath"]))) || file == s(&m["mountPath"])
        })
    };
    for file in [
        config_path,
        toml["server"]["tls_cert_file"].as_str().expect("cert"),
        toml["server"]["tls_key_file"].as_str().expect("key"),
        toml["archive"]["data_dir"].as_str().expect("data_dir"),
    ] {
        assert!(mounted(file), "{file} is not on a mounted volume");
    }
    assert!(config_path.ends_with("/aiops.toml"));
    for p in ["readinessProbe", "livenessProbe"] {
        let probe = &container[p]["httpGet"];
        assert!(ports.iter().any(|x| x["name"] == probe["port"]), "{p}");
    }
    assert_eq!(
        s(&container["readinessProbe"]["httpGet"]["path"]),
        "/readyz"
    );
    assert_eq!(
        s(&container["livenessProbe"]["httpGet"]["path"]),
        "/healthz"
    );
    // Listening beyond loopback needs credentials; their files are mounted.
    let creds = toml["server"]["credentials"]
        .as_array()
        .expect("credentials");
    assert!(!creds.is_empty());
    for c in creds {
        let file = c["token_file"].as_str().expect("token_file");
        assert!(mounted(file), "{file} is not on a mounted volume");
    }

    // Services reach named container ports; the APIService reaches the TLS Service.
    let http = find(&all, "Service", "aiops");
    assert_eq!(http["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(
        http["spec"]["ports"][0]["port"].as_i64(),
        Some(port_of("listen"))
    );
    let https = find(&all, "Service", "aiops-metrics-api");
    assert_eq!(https["spec"]["ports"][0]["targetPort"], "https");
    for svc in [http, https] {
        assert_eq!(
            svc["metadata"]["namespace"],
            deploy["metadata"]["namespace"]
        );
        assert_eq!(
            svc["spec"]["selector"],
            deploy["spec"]["selector"]["matchLabels"]
        );
    }
    let api = find(&all, "APIService", "v1beta1.external.metrics.k8s.io");
    assert_eq!(api["spec"]["group"], "external.metrics.k8s.io");
    assert_eq!(api["spec"]["version"], "v1beta1");
    assert_eq!(api["spec"]["service"]["name"], https["metadata"]["name"]);
    assert_eq!(
        api["spec"]["service"]["namespace"],
        https["metadata"]["namespace"]
    );
    assert_eq!(
        api["spec"]["service"]["port"],
        https["spec"]["ports"][0]["port"]
    );

    // The aggregator is verified, not trusted: no insecureSkipTLSVerify, the caBundle comes
    // from the serving Certificate, and the scaling scope is not open — the front-proxy CA
    // decides, mounted where the config reads it.
    assert!(api["spec"]["insecureSkipTLSVerify"].is_null(), "{api:?}");
    assert!(
        toml["server"].get("unauthenticated_scopes").is_none(),
        "the shipped config opens a scope"
    );
    let ca_file = toml["server"]["front_proxy_ca_file"]
        .as_str()
        .expect("front_proxy_ca_file");
    assert!(mounted(ca_file), "{ca_file} is not on a mounted volume");
    let certs = docs("cert-manager.yaml");
    let serving = find(&certs, "Certificate", "aiops-serving");
    assert_eq!(
        s(&api["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]),
        format!(
            "{}/{}",
            s(&serving["metadata"]["namespace"]),
            s(&serving["metadata"]["name"])
        )
    );
    let volumes = pod["volumes"].as_sequence().expect("volumes");
    assert!(
        volumes
            .iter()
            .any(|v| v["secret"]["secretName"] == serving["spec"]["secretName"]),
        "the Deployment mounts the Secret the Certificate fills"
    );
    let service_dns = format!(
        "{}.{}.svc",
        s(&https["metadata"]["name"]),
        s(&https["metadata"]["namespace"])
    );
    assert!(
        serving["spec"]["dnsNames"]
            .as_sequence()
            .expect("dnsNames")
            .iter()
            .any(|n| s(n) == service_dns),
        "the certificate names {service_dns}"
    );
    let issuer = find(&certs, "Issuer", s(&serving["spec"]["issuerRef"]["name"]));
    let ca = find(
        &certs,
        "Certificate",
        s(&issuer["spec"]["ca"]["secretName"]),
    );
    assert_eq!(ca["spec"]["isCA"].as_bool(), Some(true));
    for script in ["front-proxy-ca.sh", "serving-cert.sh"] {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes/").to_owned() + script;
        let ok = std::process::Command::new("bash")
            .args(["-n", &path])
            .status()
            .expect("bash runs");
        assert!(ok.success(), "{script} does not parse");
    }

    // RBAC: the HPA controller may read external metrics; our account may delegate auth.
    let binding = find(&all, "ClusterRoleBinding", "aiops-hpa-external-metrics");
    assert_eq!(binding["subjects"][0]["name"], "horizontal-pod-autoscaler");
    let role = find(&all, "ClusterRole", s(&binding["roleRef"]["name"]));
    assert_eq!(role["rules"][0]["apiGroups"][0], "external.metrics.k8s.io");
    let sa = s(&pod["serviceAccountName"]);
    for (kind, name) in [
        ("RoleBinding", "aiops-auth-reader"),
        ("ClusterRoleBinding", "aiops-auth-delegator"),
    ] {
        assert_eq!(find(&all, kind, name)["subjects"][0]["name"], sa);
    }
    find(&all, "ServiceAccount", sa);

    // The HPA and the KEDA alternative use a configured target.
    let target = &toml["detect"]["scaling"]["targets"][0];
    let hpa = &docs("hpa.yaml")[0];
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    let metric = &hpa["spec"]["metrics"][0]["external"];
    assert_eq!(
        s(&metric["metric"]["name"]),
        target["name"].as_str().expect("name")
    );
    assert_eq!(
        s(&hpa["metadata"]["namespace"]),
        target["namespace"].as_str().expect("ns")
    );
    for (k, v) in metric["metric"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("labels")
    {
        assert_eq!(target["labels"][s(k)].as_str(), Some(s(v)));
    }
    assert_eq!(metric["target"]["type"], "AverageValue");
    let keda = &docs("keda-scaledobject.yaml")[0];
    let url = s(&keda["spec"]["triggers"][0]["metadata"]["url"]);
    let want = format!(
        "http://{}.{}.svc:{}/api/v1/scaling/{}",
        s(&http["metadata"]["name"]),
        s(&http["metadata"]["namespace"]),
        port_of("listen"),
        target["name"].as_str().expect("name")
    );
    assert_eq!(url, want);
    assert_eq!(
        keda["spec"]["triggers"][0]["metadata"]["valueLocation"],
        "value"
    );
}
