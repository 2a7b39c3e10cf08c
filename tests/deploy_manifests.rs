//! The Kubernetes deployment in `deploy/kubernetes` (kustomize: a base, the external-metrics
//! component, three overlays), rendered with `kubectl kustomize` as `kubectl apply -k` would:
//! names, ports and paths agree with each other, with the binary's defaults and with the
//! configuration each overlay ships (which the real binary accepts, with the Deployment's
//! `AIOPS__…` variables); every overlay is secure by default. `scripts/k8s_validate.sh` checks
//! the same renders against the Kubernetes schemas.

mod common;

use std::collections::BTreeMap;

use serde_yaml::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");

/// `kubectl kustomize` of an overlay.
fn render(overlay: &str) -> Vec<Value> {
    let dir = format!("{ROOT}/overlays/{overlay}");
    let out = std::process::Command::new("kubectl")
        .args(["kustomize", &dir])
        .output()
        .expect("kubectl is needed for this test: run scripts/test.sh (installs Debian's kubectl)");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{dir}: {e}")))
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn has(docs: &[Value], kind: &str) -> bool {
    docs.iter().any(|d| d["kind"] == kind)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// The overlay's configuration: the ConfigMap's TOML (its name carries a content hash) and the
/// Deployment's `AIOPS__…` variables; checked by the real binary.
fn config(all: &[Value]) -> (toml::Value, BTreeMap<String, String>) {
    let cm = all
        .iter()
        .find(|d| {
            d["kind"] == "ConfigMap" && s(&d["metadata"]["name"]).starts_with("aiops-config-")
        })
        .expect("the generated ConfigMap");
    let text = s(&cm["data"]["aiops.toml"]).to_owned();
    let deploy = find(all, "Deployment", "aiops");
    let env: BTreeMap<String, String> = deploy["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .map(|e| {
            e.iter()
                .map(|v| (s(&v["name"]).to_owned(), s(&v["value"]).to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("aiops.toml");
    std::fs::write(&path, &text).expect("write");
    let mut cmd = common::aiops();
    cmd.arg("check-config").arg(&path).envs(&env);
    common::succeeded(&mut cmd);
    (toml::from_str(&text).expect("TOML"), env)
}

/// A server setting from the Deployment's variable, else from the TOML.
fn server<'a>(
    toml: &'a toml::Value,
    env: &'a BTreeMap<String, String>,
    key: &str,
) -> Option<&'a str> {
    env.get(&format!("AIOPS__SERVER__{}", key.to_uppercase()))
        .map(String::as_str)
        .or_else(|| toml["server"].get(key).and_then(|v| v.as_str()))
}

/// What every overlay shares: the Deployment, its mounts, probes, security, the Service, the
/// disruption budget, the network policy, the ServiceMonitor.
fn check_common(overlay: &str, all: &[Value]) -> (toml::Value, BTreeMap<String, String>) {
    for d in all {
        assert!(
            d["apiVersion"].is_string() && d["kind"].is_string(),
            "{overlay}: {d:?}"
        );
    }
    let (toml, env) = config(all);
    let port_of = |v: Option<&str>| -> i64 {
        v.and_then(|a| a.rsplit(':').next()?.parse().ok())
            .expect("an address with a port")
    };
    assert_eq!(
        port_of(server(&toml, &env, "listen")),
        9201,
        "the binary's default port"
    );

    let deploy = find(all, "Deployment", "aiops");
    let pod = &deploy["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let ports = container["ports"].as_sequence().expect("ports");
    let container_port = |name: &str| {
        ports
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_i64())
    };
    assert_eq!(
        container_port("http"),
        Some(port_of(server(&toml, &env, "listen")))
    );
    assert_eq!(
        deploy["spec"]["selector"]["matchLabels"],
        deploy["spec"]["template"]["metadata"]["labels"]
    );
    assert_eq!(
        deploy["spec"]["strategy"]["type"], "Recreate",
        "one owner of the data"
    );

    // The config file, certificates, tokens and data directory are on mounted volumes; the
    // mounted ConfigMap is the generated one.
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
    let mut files = vec![
        config_path,
        toml["archive"]["data_dir"].as_str().expect("data_dir"),
    ];
    let creds = toml["server"]["credentials"]
        .as_array()
        .expect("credentials");
    assert!(
        !creds.is_empty(),
        "listening beyond loopback needs credentials"
    );
    files.extend(
        creds
            .iter()
            .map(|c| c["token_file"].as_str().expect("token_file")),
    );
    for key in ["tls_cert_file", "tls_key_file", "front_proxy_ca_file"] {
        files.extend(server(&toml, &env, key));
    }
    for file in files {
        assert!(
            mounted(file),
            "{overlay}: {file} is not on a mounted volume"
        );
    }
    let volumes = pod["volumes"].as_sequence().expect("volumes");
    let cm = volumes
        .iter()
        .find(|v| {
            !v["configMap"]["name"].is_null()
                && s(&v["configMap"]["name"]).starts_with("aiops-config")
        })
        .expect("the config volume");
    find(all, "ConfigMap", s(&cm["configMap"]["name"]));
    assert!(
        volumes
            .iter()
            .any(|v| v["secret"]["secretName"] == "aiops-credentials")
    );
    assert!(
        toml["server"].get("unauthenticated_scopes").is_none(),
        "{overlay} opens a scope"
    );
    for p in ["readinessProbe", "livenessProbe"] {
        assert!(
            ports
                .iter()
                .any(|x| x["name"] == container[p]["httpGet"]["port"]),
            "{p}"
        );
    }
    assert_eq!(
        s(&container["readinessProbe"]["httpGet"]["path"]),
        "/readyz"
    );
    assert_eq!(
        s(&container["livenessProbe"]["httpGet"]["path"]),
        "/healthz"
    );

    // Secure by default: non-root, read-only root file system, no privileges, bounded, no
    // service-account token, and a namespace enforcing the restricted Pod Security Standard.
    assert_eq!(
        pod["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true),
        "{overlay}"
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert!(mounted("/tmp"), "a writable /tmp beside the read-only root");
    for k in ["cpu", "memory"] {
        assert!(
            container["resources"]["requests"][k].is_string(),
            "requests.{k}"
        );
    }
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert_eq!(
        find(all, "Namespace", "aiops")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );

    let http = find(all, "Service", "aiops");
    assert_eq!(http["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(
        http["spec"]["ports"][0]["port"].as_i64(),
        container_port("http")
    );
    assert_eq!(
        http["spec"]["selector"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        http["metadata"]["namespace"],
        deploy["metadata"]["namespace"]
    );
    let pdb = find(all, "PodDisruptionBudget", "aiops");
    assert_eq!(pdb["spec"]["selector"], deploy["spec"]["selector"]);
    let np = find(all, "NetworkPolicy", "aiops");
    assert_eq!(np["spec"]["podSelector"], deploy["spec"]["selector"]);
    assert_eq!(
        np["spec"]["ingress"][0]["ports"][0]["port"].as_i64(),
        container_port("http")
    );
    let sm = find(all, "ServiceMonitor", "aiops");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        sm["spec"]["endpoints"][0]["authorization"]["credentials"]["name"],
        "aiops-credentials"
    );
    for (k, v) in sm["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels")
    {
        assert_eq!(
            &http["metadata"]["labels"][s(k)],
            v,
            "the ServiceMonitor selects the Service"
        );
    }
    (toml, env)
}

/// The external metrics API: TLS Service, APIService with the CA injected from the serving
/// Certificate, the front proxy, RBAC.
fn check_external_metrics(all: &[Value], toml: &toml::Value, env: &BTreeMap<String, String>) {
    let deploy = find(all, "Deployment", "aiops");
    let pod = &deploy["spec"]["template"]["spec"];
    let ports = pod["containers"][0]["ports"].as_sequence().expect("ports");
    let tls_port: i64 = server(toml, env, "tls_listen")
        .and_then(|a| a.rsplit(':').next()?.parse().ok())
        .expect("tls_listen");
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "https" && p["containerPort"].as_i64() == Some(tls_port))
    );
    let https = find(all, "Service", "aiops-metrics-api");
    assert_eq!(https["spec"]["ports"][0]["targetPort"], "https");
    assert_eq!(
        https["spec"]["selector"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        https["metadata"]["namespace"],
        deploy["metadata"]["namespace"]
    );
    let api = find(all, "APIService", "v1beta1.external.metrics.k8s.io");
    assert_eq!(api["spec"]["group"], "external.metrics.k8s.io");
    assert_eq!(api["spec"]["service"]["name"], https["metadata"]["name"]);
    assert_eq!(
        api["spec"]["service"]["namespace"],
        https["metadata"]["namespace"]
    );
    assert_eq!(
        api["spec"]["service"]["port"],
        https["spec"]["ports"][0]["port"]
    );
    // The aggregator is verified, not trusted.
    assert!(api["spec"]["insecureSkipTLSVerify"].is_null(), "{api:?}");
    assert!(server(toml, env, "front_proxy_ca_file").is_some());
    let serving = find(all, "Certificate", "aiops-serving");
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
    let dns = format!(
        "{}.{}.svc",
        s(&https["metadata"]["name"]),
        s(&https["metadata"]["namespace"])
    );
    assert!(
        serving["spec"]["dnsNames"]
            .as_sequence()
            .expect("dnsNames")
            .iter()
            .any(|n| s(n) == dns)
    );
    let issuer = find(all, "Issuer", s(&serving["spec"]["issuerRef"]["name"]));
    let ca = find(all, "Certificate", s(&issuer["spec"]["ca"]["secretName"]));
    assert_eq!(ca["spec"]["isCA"].as_bool(), Some(true));
    let np = find(all, "NetworkPolicy", "aiops-external-metrics");
    assert_eq!(
        np["spec"]["ingress"][0]["ports"][0]["port"].as_i64(),
        Some(tls_port)
    );
    let binding = find(all, "ClusterRoleBinding", "aiops-hpa-external-metrics");
    assert_eq!(binding["subjects"][0]["name"], "horizontal-pod-autoscaler");
    let role = find(all, "ClusterRole", s(&binding["roleRef"]["name"]));
    assert_eq!(role["rules"][0]["apiGroups"][0], "external.metrics.k8s.io");
    let reader = find(all, "RoleBinding", "aiops-auth-reader");
    assert_eq!(reader["metadata"]["namespace"], "kube-system");
    assert_eq!(reader["subjects"][0]["name"], pod["serviceAccountName"]);
}

#[test]
fn every_overlay_renders_secure_and_agrees_with_the_binary() {
    // Single node: the external metrics API for the HPA.
    let single = render("single-node");
    let (toml, env) = check_common("single-node", &single);
    check_external_metrics(&single, &toml, &env);
    assert!(!env.contains_key("AIOPS__TRANSPORT__KIND"));

    // Kafka: the same, on the Kafka transport.
    let kafka = render("kafka");
    let (ktoml, kenv) = check_common("kafka", &kafka);
    check_external_metrics(&kafka, &ktoml, &kenv);
    assert_eq!(
        kenv.get("AIOPS__TRANSPORT__KIND").map(String::as_str),
        Some("kafka")
    );
    assert!(kenv.contains_key("AIOPS__TRANSPORT__KAFKA__BROKERS"));

    // KEDA: no APIService, no TLS; KEDA asks the external scaler (gRPC), which only KEDA's
    // namespace reaches.
    let keda = render("keda");
    let (ktoml, kenv) = check_common("keda", &keda);
    assert!(!has(&keda, "APIService") && !has(&keda, "Certificate"));
    assert!(server(&ktoml, &kenv, "tls_listen").is_none());
    let target = &ktoml["detect"]["scaling"]["targets"][0];
    let grpc_port: i64 = server(&ktoml, &kenv, "keda_listen")
        .and_then(|a| a.rsplit(':').next()?.parse().ok())
        .expect("keda_listen");
    let deploy = find(&keda, "Deployment", "aiops");
    let ports = deploy["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_sequence()
        .expect("ports");
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "grpc" && p["containerPort"].as_i64() == Some(grpc_port))
    );
    let http = find(&keda, "Service", "aiops");
    let svc_grpc = http["spec"]["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .find(|p| p["targetPort"] == "grpc")
        .and_then(|p| p["port"].as_i64())
        .expect("the Service's grpc port");
    let np = find(&keda, "NetworkPolicy", "aiops-keda");
    assert_eq!(
        np["spec"]["ingress"][0]["ports"][0]["port"].as_i64(),
        Some(grpc_port)
    );
    assert_eq!(
        np["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "keda"
    );
    assert_eq!(
        kenv.get("AIOPS__SERVER__KEDA_ALLOW_UNAUTHENTICATED")
            .map(String::as_str),
        Some("true")
    );
    let so = find(&keda, "ScaledObject", "checkout");
    let trigger = &so["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "external");
    assert_eq!(
        s(&trigger["metadata"]["scalerAddress"]),
        format!(
            "{}.{}.svc:{svc_grpc}",
            s(&http["metadata"]["name"]),
            s(&http["metadata"]["namespace"])
        )
    );
    assert_eq!(
        trigger["metadata"]["target"].as_str(),
        target["name"].as_str()
    );

    // The HPA example uses a configured target; the helper scripts parse.
    let hpa_text = std::fs::read_to_string(format!("{ROOT}/hpa.yaml")).expect("hpa.yaml");
    let hpa: Value = serde_yaml::from_str(&hpa_text).expect("YAML");
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
    for script in ["front-proxy-ca.sh", "serving-cert.sh"] {
        let ok = std::process::Command::new("bash")
            .args(["-n", &format!("{ROOT}/{script}")])
            .status()
            .expect("bash runs");
        assert!(ok.success(), "{script} does not parse");
    }
}
