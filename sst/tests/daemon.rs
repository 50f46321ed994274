//! `sst node run` as separate processes on SQLite files: keys and configs from `sst keygen`
//! and `sst node init`, a client-signed create and change through the client API (`sst
//! submit` and the `sst-client` crate), custody mode, outcome, state narrowed to the caller,
//! sync status, the event stream (`sst events`, and following it), metrics, refused
//! requests (unknown key, replay, non-party, not this node's actor), then SIGTERM and a
//! restart from the store. Every wait is bounded.

#[path = "support/ports.rs"]
mod ports;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};
use sst::core::{ActorKey, ContractRef, Parties, RejectReason, StateId};
use sst_client::api::{ErrorCode, IntentBody, StreamedEvent, VerdictBody};
use sst_client::Client;

/// Longest wait for a node to come up, an outcome, or an exit.
const DEADLINE: Duration = Duration::from_secs(60);

fn sst(args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_sst"))
        .args(args)
        .output()?;
    Ok((
        out.status.code().context("killed")?,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `sst` with `args`, which must succeed; its stdout.
fn sst_ok(args: &[&str]) -> anyhow::Result<String> {
    let (code, out, err) = sst(args)?;
    ensure!(code == 0, "sst {args:?} exited {code}:\n{out}\n{err}");
    Ok(out)
}

struct Dir(PathBuf);
impl Dir {
    fn new(name: &str) -> anyhow::Result<Self> {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("sst-daemon-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Dir(dir))
    }
    fn path(&self, name: &str) -> anyhow::Result<String> {
        Ok(self.0.join(name).to_str().context("utf-8 path")?.to_owned())
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A node process; killed if still running when dropped.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `sst node run --config CONFIG` and waits until its API answers `probe`'s
    /// `/health`.
    async fn start(config: &str, probe: &Client, log: PathBuf) -> anyhow::Result<Self> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_sst"))
            .args(["node", "run", "--config", config])
            .env("SST_LOG", "info")
            .stdout(Stdio::from(stderr.try_clone()?))
            .stderr(Stdio::from(stderr))
            .spawn()?;
        let mut d = Daemon { child, log };
        let start = Instant::now();
        loop {
            if let Some(status) = d.child.try_wait()? {
                bail!("node exited {status} at start:\n{}", d.log_text());
            }
            if probe.health().await.is_ok() {
                return Ok(d);
            }
            if start.elapsed() > DEADLINE {
                bail!("node not up after {DEADLINE:?}:\n{}", d.log_text());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for a clean exit.
    async fn terminate(mut self) -> anyhow::Result<String> {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status()?;
        ensure!(status.success(), "kill -TERM {pid} failed");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(
                    status.success(),
                    "node exited {status} after SIGTERM:\n{}",
                    self.log_text()
                );
                return Ok(self.log_text());
            }
            ensure!(
                start.elapsed() < DEADLINE,
                "node still running {DEADLINE:?} after SIGTERM:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a client command (`submit`, `state`, `events`, `status`) as one actor against one
/// node's API; its stdout.
struct Cli<'a> {
    api: String,
    actor: &'a str,
    key: &'a str,
    /// The node's public key: mutual TLS; `None`: plain HTTP.
    node_key: Option<&'a str>,
}

impl Cli<'_> {
    fn run(&self, command: &str, rest: &[&str]) -> anyhow::Result<String> {
        let mut args = vec![
            command, "--api", &self.api, "--actor", self.actor, "--key", self.key,
        ];
        if let Some(k) = self.node_key {
            args.extend_from_slice(&["--node-key", k]);
        }
        args.extend_from_slice(rest);
        sst_ok(&args)
    }
}

fn append(path: &str, text: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn key(path: &str) -> anyhow::Result<ActorKey> {
    ActorKey::from_pkcs8_pem(&std::fs::read_to_string(path)?).map_err(|e| anyhow::anyhow!("{e}"))
}

fn values(v: Value) -> anyhow::Result<std::collections::BTreeMap<String, Value>> {
    Ok(serde_json::from_value(v)?)
}

/// Polls `f` every 100 ms until it yields `Some`, for at most [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        ensure!(start.elapsed() < DEADLINE, "{what}: not after {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_daemon_serves_client_signed_intents_and_restarts_from_its_store(
) -> anyhow::Result<()> {
    let dir = Dir::new("one")?;
    let alice_pem = dir.path("alice.pem")?;
    let ops_pem = dir.path("ops.pem")?;
    let mallory_pem = dir.path("mallory.pem")?;
    let alice_pub = sst_ok(&["keygen", "--out", &alice_pem])?.trim().to_owned();
    let ops_pub = sst_ok(&["keygen", "--out", &ops_pem])?.trim().to_owned();
    let mallory_pub = sst_ok(&["keygen", "--out", &mallory_pem])?
        .trim()
        .to_owned();
    ensure!(alice_pub.len() == 64, "public key hex: {alice_pub}");
    let (code, _, err) = sst(&["keygen", "--out", &alice_pem])?;
    ensure!(code == 2 && err.contains("not overwriting"), "{err}");

    let acme = node_init(&dir, "acme")?;
    ensure!(acme.public.len() == 64, "{}", acme.public);
    let (api, config) = (acme.api, acme.config.clone());
    // Plain HTTP for this node (its requests are still signed by actor keys).
    let text = std::fs::read_to_string(&config)?.replace("api_tls = true", "api_tls = false");
    std::fs::write(&config, text)?;
    append(
        &config,
        &format!(
            "\n[[actor]]\nid = \"acme/alice\"\nkey = \"{alice_pub}\"\n\
             \n[[actor]]\nid = \"acme/ops\"\nkey = \"{ops_pub}\"\n\
             \n[[actor]]\nid = \"acme/mallory\"\nkey = \"{mallory_pub}\"\n\
             \n[[custody]]\nactor = \"acme/ops\"\nkey = \"{ops_pem}\"\n\
             \n[[contract]]\ncontract = \"real-estate-deal@1\"\ndeployer = \"acme/ops\"\n"
        ),
    )?;

    let alice = Client::new(api, "acme/alice", key(&alice_pem)?);
    let node = Daemon::start(&config, &alice, dir.0.join("acme.log")).await?;
    let ops = Client::new(api, "acme/ops", key(&ops_pem)?);
    let mallory = Client::new(api, "acme/mallory", key(&mallory_pem)?);

    // A client-signed create through the CLI: alice signs, the node sequences.
    let create = json!({
        "intent": "create",
        "state_id": "deal-1",
        "contract": {"name": "real-estate-deal", "version": 1},
        "parties": {"buyer": ["acme/alice"], "seller": ["acme/ops"]},
        "sections": {"common": {"address": "1 Loop Road"}, "price": {"amount": 500000}},
    });
    let cli = Cli {
        api: api.to_string(),
        actor: "acme/alice",
        key: &alice_pem,
        node_key: None,
    };
    let out = cli.run("submit", &[&create.to_string()])?;
    let verdict: VerdictBody = serde_json::from_str(&out)?;
    ensure!(
        matches!(verdict, VerdictBody::Applied { version: 1, .. }),
        "{out}"
    );
    let created = verdict.event();

    // A client-signed change through the client crate.
    let change = IntentBody::Change {
        state_id: StateId::from("deal-1"),
        sections: values(json!({"price": {"amount": 480000}}))?,
    };
    let verdict = alice.submit(change).await?;
    ensure!(
        matches!(verdict, VerdictBody::Applied { version: 2, .. }),
        "{verdict:?}"
    );
    // Custody mode: the node signs for its service actor ops.
    let custody = IntentBody::Change {
        state_id: StateId::from("deal-1"),
        sections: values(json!({"common": {"address": "1 Loop Road", "floor": 3}}))?,
    };
    let verdict = alice.submit_custody("acme/ops", custody.clone()).await?;
    ensure!(
        matches!(verdict, VerdictBody::Applied { version: 3, .. }),
        "{verdict:?}"
    );
    // A key the node does not hold in custody is refused.
    let err = ops
        .submit_custody("acme/alice", custody)
        .await
        .err()
        .context("custody for alice accepted")?;
    ensure!(err.code() == Some(ErrorCode::Forbidden), "{err}");
    // A write the contract forbids is recorded as rejected, not an error.
    let forbidden = IntentBody::Change {
        state_id: StateId::from("deal-1"),
        sections: values(json!({"inspection": {"radon": 1.0}}))?,
    };
    let verdict = alice.submit(forbidden).await?;
    ensure!(
        matches!(verdict, VerdictBody::Rejected { .. }),
        "{verdict:?}"
    );

    // Outcome of the create.
    let outcome = alice
        .outcome(&created, Duration::from_secs(1))
        .await?
        .context("create outcome")?;
    ensure!(outcome.event == created, "{outcome:?}");

    // The state through the CLI, as alice (buyer: reads common and price).
    let out = cli.run("state", &["deal-1"])?;
    let state: sst::core::State = serde_json::from_str(&out)?;
    ensure!(state.version == 3, "{out}");
    let price = state.sections["price"]
        .disclosure
        .as_ref()
        .context("price redacted for the buyer")?;
    ensure!(*price.value == json!({"amount": 480000}), "{price:?}");
    // mallory is no party: refused; an unknown key is not authenticated.
    let err = mallory
        .state(&StateId::from("deal-1"))
        .await
        .err()
        .context("a non-party read the state")?;
    ensure!(err.code() == Some(ErrorCode::Forbidden), "{err}");
    let stranger = Client::new(api, "acme/alice", ActorKey::generate());
    let err = stranger
        .state(&StateId::from("deal-1"))
        .await
        .err()
        .context("a wrong key read the state")?;
    ensure!(err.code() == Some(ErrorCode::Unauthenticated), "{err}");

    // Sync status on the home node.
    let out = cli.run("status", &["deal-1"])?;
    let status: sst_client::api::StatusBody = serde_json::from_str(&out)?;
    ensure!(
        status.home.as_str() == "acme" && status.version == 3,
        "{out}"
    );
    // The deal's contract chooses no protocol: the home-node protocol.
    ensure!(status.protocol.as_deref() == Some("home"), "{out}");

    // The event stream through the CLI: the three applied events and the rejection.
    let out = cli.run("events", &[])?;
    let lines: Vec<StreamedEvent> = out
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(lines.len() == 4, "{out}");
    ensure!(lines[0].record.id() == created, "{out}");
    let last_pos = lines[3].pos;
    // mallory sees none of them.
    let mut none = mallory.events(0, false).await?;
    ensure!(none.next().await?.is_none(), "a non-party saw events");
    // Following: a new change arrives on the open stream.
    let mut follow = alice.events(last_pos, true).await?;
    let verdict = alice
        .submit(IntentBody::Change {
            state_id: StateId::from("deal-1"),
            sections: values(json!({"price": {"amount": 470000}}))?,
        })
        .await?;
    ensure!(verdict.is_applied(), "{verdict:?}");
    let next = tokio::time::timeout(DEADLINE, follow.next())
        .await
        .context("no event on the followed stream")??
        .context("stream ended")?;
    ensure!(
        next.record.id() == verdict.event() && next.pos > last_pos,
        "{next:?}"
    );
    drop(follow);

    // Metrics are the store's counts (read by a task tailing the log: eventually).
    let expected = [
        "sst_events_committed_total{outcome=\"applied\"} 4\n",
        "sst_events_committed_total{outcome=\"rejected\"} 1\n",
        "sst_refusals_total 0\n",
        "sst_witness_alarms 0\n",
    ];
    let metrics = eventually("metrics counting every event", || async {
        let m = alice.metrics().await?;
        Ok(expected.iter().all(|line| m.contains(line)).then_some(m))
    })
    .await?;
    ensure!(metrics.contains("sst_uptime_seconds "), "{metrics}");

    // A captured request replayed is refused; the same request freshly signed is not.
    let alice_key = key(&alice_pem)?;
    let path = "/v1/states/deal-1";
    let signed = sst_client::auth::sign_request(&alice_key, &"acme/alice".into(), "GET", path, b"");
    ensure!(
        raw_status(api, path, &signed)? == 200,
        "signed request refused"
    );
    ensure!(
        raw_status(api, path, &signed)? == 401,
        "replayed request accepted"
    );
    ensure!(
        raw_status(api, path, &[])? == 401,
        "unsigned request accepted"
    );
    // The curl helper: `sst sign-request` prints -Hname:value options for one request.
    let options = sst_ok(&[
        "sign-request",
        "--actor",
        "acme/alice",
        "--key",
        &alice_pem,
        path,
    ])?;
    let names = [
        sst_client::auth::ACTOR_HEADER,
        sst_client::auth::TIME_HEADER,
        sst_client::auth::NONCE_HEADER,
        sst_client::auth::SIGNATURE_HEADER,
    ];
    let headers: Vec<(&'static str, String)> = options
        .split_whitespace()
        .map(|o| {
            let (name, value) = o
                .trim_start_matches("-H")
                .split_once(':')
                .context("not -Hname:value")?;
            let name = names
                .into_iter()
                .find(|h| *h == name)
                .context("unknown header")?;
            Ok((name, value.to_owned()))
        })
        .collect::<anyhow::Result<_>>()?;
    ensure!(headers.len() == 4, "{options}");
    ensure!(raw_status(api, path, &headers)? == 200, "{options}");
    // An intent whose origin is another node is refused without being sequenced.
    let grant = alice.reserve().await?;
    ensure!(grant.origin_node.as_str() == "acme", "{grant:?}");
    let elsewhere = sst::node::EventBuilder::new("globex", "acme/alice", &alice_key).build(
        grant.origin_seq,
        &IntentBody::Create {
            state_id: StateId::from("deal-x"),
            contract: ContractRef::new("real-estate-deal", 1),
            parties: Parties::default()
                .with("buyer", "acme/alice")
                .with("seller", "acme/ops"),
            sections: values(json!({"common": {"address": "x"}}))?,
        }
        .into(),
        None,
    )?;
    let err = alice
        .post_signed(&sst_client::api::SignedIntent {
            signed: elsewhere.signed,
            disclosures: elsewhere.disclosures,
        })
        .await
        .err()
        .context("an intent of another origin was accepted")?;
    ensure!(err.code() == Some(ErrorCode::BadRequest), "{err}");

    let log = node.terminate().await?;
    ensure!(log.contains("node acme: stopping"), "{log}");

    // Restart from the store: the state is still there, and the node takes new intents.
    let node = Daemon::start(&config, &alice, dir.0.join("acme.log")).await?;
    let state = alice
        .state(&StateId::from("deal-1"))
        .await?
        .context("state gone after restart")?;
    ensure!(state.version == 4, "{state:?}");
    let verdict = alice
        .submit(IntentBody::Change {
            state_id: StateId::from("deal-1"),
            sections: values(json!({"price": {"amount": 460000}}))?,
        })
        .await?;
    ensure!(
        matches!(verdict, VerdictBody::Applied { version: 5, .. }),
        "{verdict:?}"
    );
    let contract = ContractRef::new("real-estate-deal", 1);
    let verdict = ops
        .submit(IntentBody::Create {
            state_id: StateId::from("deal-2"),
            contract,
            parties: Parties::default()
                .with("buyer", "acme/alice")
                .with("seller", "acme/ops"),
            sections: values(json!({"common": {"address": "2 Loop Road"}}))?,
        })
        .await?;
    ensure!(verdict.is_applied(), "{verdict:?}");
    node.terminate().await?;
    Ok(())
}

/// Sends one raw HTTP/1.1 request with the given signed headers; the status code.
fn raw_status(
    api: SocketAddr,
    path: &str,
    headers: &[(&'static str, String)],
) -> anyhow::Result<u16> {
    use std::io::Read;
    let mut tcp = std::net::TcpStream::connect(api)?;
    tcp.set_read_timeout(Some(DEADLINE))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: {api}\r\nconnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes())?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer)?;
    let code = answer
        .split_whitespace()
        .nth(1)
        .context("no status line")?
        .parse()?;
    Ok(code)
}

/// A node directory made by `sst node init`: its config path and public node key.
struct NodeDir {
    config: String,
    public: String,
    api: SocketAddr,
    listen: SocketAddr,
    /// The claims on `api` and `listen` ([`ports`]), held while the test runs.
    _ports: [ports::Port; 2],
}

fn node_init(dir: &Dir, id: &str) -> anyhow::Result<NodeDir> {
    let claims = [ports::claim()?, ports::claim()?];
    let (api, listen) = (claims[0].addr(), claims[1].addr());
    let node_dir = dir.path(id)?;
    let public = sst_ok(&[
        "node",
        "init",
        "--id",
        id,
        "--dir",
        &node_dir,
        "--listen",
        &listen.to_string(),
        "--api",
        &api.to_string(),
    ])?
    .trim()
    .to_owned();
    Ok(NodeDir {
        config: format!("{node_dir}/node.toml"),
        public,
        api,
        listen,
        _ports: claims,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_and_a_replica_process_sync_over_the_network_and_restart() -> anyhow::Result<()> {
    let dir = Dir::new("two")?;
    let alice_pem = dir.path("alice.pem")?;
    let ops_pem = dir.path("ops.pem")?;
    let bob_pem = dir.path("bob.pem")?;
    let alice_pub = sst_ok(&["keygen", "--out", &alice_pem])?.trim().to_owned();
    let ops_pub = sst_ok(&["keygen", "--out", &ops_pem])?.trim().to_owned();
    let bob_pub = sst_ok(&["keygen", "--out", &bob_pem])?.trim().to_owned();
    let acme = node_init(&dir, "acme")?;
    let globex = node_init(&dir, "globex")?;
    // globex does not hold ops's key: it gets the deployment signature.
    let signature = sst_ok(&[
        "node",
        "sign-contract",
        "--contract",
        "real-estate-deal@1",
        "--deployer",
        "acme/ops",
        "--key",
        &ops_pem,
    ])?
    .trim()
    .to_owned();
    ensure!(signature.len() == 128, "{signature}");
    let actors = format!(
        "\n[[actor]]\nid = \"acme/alice\"\nkey = \"{alice_pub}\"\n\
         \n[[actor]]\nid = \"acme/ops\"\nkey = \"{ops_pub}\"\n\
         \n[[actor]]\nid = \"globex/bob\"\nkey = \"{bob_pub}\"\n"
    );
    let peer = |n: &NodeDir, id: &str| {
        format!(
            "\n[[peer]]\nid = \"{id}\"\naddress = \"{}\"\nkey = \"{}\"\n",
            n.listen, n.public
        )
    };
    append(
        &acme.config,
        &format!(
            "{}{actors}\n[[custody]]\nactor = \"acme/ops\"\nkey = \"{ops_pem}\"\n\
             \n[[contract]]\ncontract = \"real-estate-deal@1\"\ndeployer = \"acme/ops\"\n",
            peer(&globex, "globex")
        ),
    )?;
    append(
        &globex.config,
        &format!(
            "{}{actors}\n[[contract]]\ncontract = \"real-estate-deal@1\"\ndeployer = \"acme/ops\"\n\
             signature = \"{signature}\"\n",
            peer(&acme, "acme")
        ),
    )?;
    let log = |n: &str| dir.0.join(format!("{n}.log"));
    // Both APIs over mutual TLS: clients present their actor keys and pin the node's key.
    let node_key = |n: &NodeDir| -> anyhow::Result<sst::core::PublicKey> {
        Ok(serde_json::from_value(json!(n.public))?)
    };
    let alice = Client::with_tls(acme.api, "acme/alice", key(&alice_pem)?, node_key(&acme)?)?;
    let bob = Client::with_tls(globex.api, "globex/bob", key(&bob_pem)?, node_key(&globex)?)?;
    let home = Daemon::start(&acme.config, &alice, log("acme")).await?;
    let replica = Daemon::start(&globex.config, &bob, log("globex")).await?;
    // Refused at the handshake: a key that is no actor's, a client pinning another node's
    // key, and a plain-HTTP client.
    let stranger = Client::with_tls(
        acme.api,
        "acme/alice",
        ActorKey::generate(),
        node_key(&acme)?,
    )?;
    let pinned_wrong =
        Client::with_tls(acme.api, "acme/alice", key(&alice_pem)?, node_key(&globex)?)?;
    let plain = Client::new(acme.api, "acme/alice", key(&alice_pem)?);
    for (who, client) in [
        ("stranger", &stranger),
        ("wrong pin", &pinned_wrong),
        ("plain", &plain),
    ] {
        match client.health().await {
            Err(sst_client::ClientError::Connection { .. }) => {}
            other => bail!("{who}: not refused at the connection: {other:?}"),
        }
    }
    // A request claiming another actor than its key's is refused.
    let impostor = Client::with_tls(acme.api, "acme/ops", key(&alice_pem)?, node_key(&acme)?)?;
    let err = impostor
        .state(&StateId::from("deal-9"))
        .await
        .err()
        .context("impostor served")?;
    ensure!(err.code() == Some(ErrorCode::Unauthenticated), "{err}");

    // alice signs a create and a change on the home node (the CLI, then the client crate).
    let create = json!({
        "intent": "create",
        "state_id": "deal-9",
        "contract": {"name": "real-estate-deal", "version": 1},
        "parties": {"buyer": ["acme/alice"], "seller": ["acme/ops"], "regulator": ["globex/bob"]},
        "sections": {"common": {"address": "9 Wire Street"}, "price": {"amount": 900000}},
    });
    let cli = Cli {
        api: acme.api.to_string(),
        actor: "acme/alice",
        key: &alice_pem,
        node_key: Some(&acme.public),
    };
    let verdict: VerdictBody = serde_json::from_str(&cli.run("submit", &[&create.to_string()])?)?;
    ensure!(verdict.is_applied(), "{verdict:?}");
    let verdict = alice
        .submit(IntentBody::Change {
            state_id: StateId::from("deal-9"),
            sections: values(json!({"common": {"address": "9 Wire Street", "floor": 2}}))?,
        })
        .await?;
    ensure!(
        matches!(verdict, VerdictBody::Applied { version: 2, .. }),
        "{verdict:?}"
    );

    // bob reads it on the replica: common in clear, the price hidden (nor does globex hold it).
    let deal = StateId::from("deal-9");
    let state = eventually("deal-9 v2 on the replica", || async {
        Ok(bob.state(&deal).await?.filter(|s| s.version == 2))
    })
    .await?;
    let common = state.sections["common"]
        .disclosure
        .as_ref()
        .context("common hidden from the regulator")?;
    ensure!(common.value["floor"] == json!(2), "{common:?}");
    ensure!(
        state.sections["price"].disclosure.is_none(),
        "the regulator sees the price"
    );
    // The home's sync status names the replica at v2.
    eventually("globex acknowledged v2 on the home", || async {
        let s = alice.status(&deal).await?.context("no status")?;
        Ok(s.nodes
            .iter()
            .any(|n| n.node.as_str() == "globex" && n.acknowledged == 2)
            .then_some(()))
    })
    .await?;
    // A change bob signs on the replica is forwarded to the home, which sequences deal-9 and
    // rejects it (a regulator writes nothing); the rejection comes back to bob's node.
    let verdict = bob
        .submit(IntentBody::Change {
            state_id: deal.clone(),
            sections: values(json!({"common": {"address": "elsewhere"}}))?,
        })
        .await?;
    ensure!(
        matches!(
            verdict,
            VerdictBody::Rejected {
                reason: RejectReason::Forbidden { .. },
                ..
            }
        ),
        "{verdict:?}"
    );
    // bob's event stream on the replica: the events of the state he is a party of.
    let bob_cli = Cli {
        api: globex.api.to_string(),
        actor: "globex/bob",
        key: &bob_pem,
        node_key: Some(&globex.public),
    };
    let events = bob_cli.run("events", &[])?;
    // The two applied versions and bob's own rejected change, with the home's receipt.
    ensure!(
        events.lines().count() == 3 && events.contains("\"forbidden\""),
        "bob's stream on the replica:\n{events}"
    );

    // SIGTERM both, restart both: the replica still holds v2; a new change reaches it.
    replica.terminate().await?;
    home.terminate().await?;
    let home = Daemon::start(&acme.config, &alice, log("acme")).await?;
    let replica = Daemon::start(&globex.config, &bob, log("globex")).await?;
    let state = bob
        .state(&deal)
        .await?
        .context("deal-9 gone from the replica")?;
    ensure!(state.version == 2, "{state:?}");
    let verdict = alice
        .submit(IntentBody::Change {
            state_id: deal.clone(),
            sections: values(json!({"common": {"address": "9 Wire Street", "floor": 3}}))?,
        })
        .await?;
    ensure!(
        matches!(verdict, VerdictBody::Applied { version: 3, .. }),
        "{verdict:?}"
    );
    eventually("deal-9 v3 on the replica after the restarts", || async {
        Ok(bob.state(&deal).await?.filter(|s| s.version == 3))
    })
    .await?;
    replica.terminate().await?;
    home.terminate().await?;
    Ok(())
}
