//! Key rotation on live nodes: a network with regtest's rules and a governance lock of
//! seconds, its spec bundles built with `commons-cli` as a ceremony builds them (each of the
//! five well-known maintainers signing from a key file), rotation proposals, and nodes run
//! on a bundle with its anchor.

use std::path::{Path, PathBuf};
use std::time::Duration;

use commons_rpc::{NoParams, SpecInfo, SubmitProposalParams, method};
use commons_signaling::spec_bundle::SpecBundle;
use commons_signaling::{BoundedString, NetworkSpec, Proposal, ProposalBody, SecretKey};

use crate::{NodeSpec, TestNode, binary, cli_succeeds, now, wait_until};

/// The tier-5 (governance) lock of [`fast_governance`], in seconds.
pub const GOVERNANCE_LOCK_SECS: u64 = 6;

/// A temporary path as the `&str` a command line takes.
pub fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// Regtest's rules as a network of its own named `name` whose governance lock is
/// [`GOVERNANCE_LOCK_SECS`], so that a rotation passes in seconds; regtest's five
/// well-known maintainers.
pub fn fast_governance(name: &str) -> NetworkSpec {
    let mut spec = NetworkSpec::regtest();
    spec.name = name.into();
    for tier in &mut spec.tiers {
        if tier.tier == 5 {
            tier.min_lock_secs = GOVERNANCE_LOCK_SECS;
        }
    }
    spec
}

/// A proposal of `tier` signed by `keys` under `spec`, locked from now for `lock` seconds.
pub fn proposal(
    spec: &NetworkSpec,
    tier: u8,
    reference: &str,
    lock: u64,
    keys: &[&SecretKey],
) -> Proposal {
    let start = now();
    let mut proposal = Proposal::new(ProposalBody {
        version: 1,
        tier,
        title: BoundedString::new(format!("{reference} at {start}")).unwrap(),
        reference: BoundedString::new(reference).unwrap(),
        lock_start: start,
        lock_end: start + lock,
    });
    for key in keys {
        proposal.add_signature(key, &spec.network_id()).unwrap();
    }
    proposal
}

/// The rotation proposal for `next`, tier 5, signed by every maintainer of `previous`'s
/// keys `keys` and locked for the governance minimum.
pub fn rotation_proposal(
    previous: &NetworkSpec,
    next: &NetworkSpec,
    keys: &[SecretKey],
) -> Proposal {
    let reference = format!("spec-rotation:{}", next.spec_id());
    proposal(
        previous,
        5,
        &reference,
        GOVERNANCE_LOCK_SECS,
        &keys.iter().collect::<Vec<_>>(),
    )
}

/// The epoch from which a rotation proposal puts its version in force on a network of
/// `epoch_secs`: the one after the last in which an override can latch.
pub fn activation_epoch(proposal: &Proposal, epoch_secs: u64) -> u64 {
    proposal.body.lock_end.div_ceil(epoch_secs) + 1
}

/// Submits `proposal` to `node`; its id.
pub fn submit(node: &TestNode, proposal: &Proposal) -> anyhow::Result<String> {
    let receipt = node.call::<method::SubmitProposal>(&SubmitProposalParams {
        hex: hex::encode(proposal.encode()),
    })?;
    Ok(receipt.id)
}

/// Whether `node` holds the proposal `id`.
pub fn holds(node: &TestNode, id: &str) -> bool {
    node.call::<method::ListProposals>(&NoParams {})
        .map(|list| list.iter().any(|p| p.id == id))
        .unwrap_or(false)
}

/// Waits until every node of `nodes` holds the proposal `id`.
pub fn wait_held_everywhere<'a>(nodes: impl IntoIterator<Item = &'a TestNode> + Clone, id: &str) {
    wait_until(Duration::from_secs(30), "the proposal everywhere", || {
        for node in nodes.clone() {
            if !holds(node, id) {
                return Err(format!("{} does not hold {id}", node.name));
            }
        }
        Ok(())
    });
}

/// The `spec` part of `node`'s `getinfo`.
pub fn spec_info(node: &TestNode) -> SpecInfo {
    node.call::<method::GetInfo>(&NoParams {})
        .unwrap()
        .spec
        .unwrap_or_else(|| panic!("{}: getinfo has no spec", node.name))
}

/// Waits until `node`'s `getinfo` says version `version` is in force; its `spec` then.
pub fn wait_in_force(node: &TestNode, version: u32) -> SpecInfo {
    wait_until(
        Duration::from_secs(40),
        &format!("{} to put version {version} in force", node.name),
        || {
            let spec = spec_info(node);
            if spec.version == version {
                Ok(spec)
            } else {
                Err(format!("{spec:?}\n{}", node.log_tail(10)))
            }
        },
    )
}

/// Starts a node of network `network` on the spec bundle `bundle`, anchored at `anchor`;
/// `measurer` as in [`NodeSpec`].
pub fn start_on_bundle(
    name: &str,
    ip: &str,
    (network, bundle): (&str, &Path),
    anchor: &str,
    bootstrap: Vec<String>,
    measurer: Option<usize>,
) -> anyhow::Result<TestNode> {
    TestNode::start_on(
        name,
        NodeSpec {
            ip: ip.into(),
            bootstrap,
            measurer,
        },
        (path(bundle), network),
        binary("commonsd"),
        vec!["--spec-anchor".into(), anchor.into()],
    )
}

/// The five well-known regtest maintainers as a ceremony has them: each key in a file of its
/// own, every signature made by `commons-cli`.
pub struct Maintainers {
    dir: PathBuf,
    /// The key files, maintainer 1 first.
    pub key_files: Vec<PathBuf>,
    /// The same keys, to sign proposals with.
    pub keys: Vec<SecretKey>,
}

impl Maintainers {
    /// Writes the five key files into `dir`.
    pub fn new(dir: &Path) -> Self {
        let key_files = (0..5)
            .map(|i| {
                let p = dir.join(format!("m{i}.key"));
                cli_succeeds(&[
                    "key",
                    "regtest-maintainer",
                    &i.to_string(),
                    "--out",
                    path(&p),
                ]);
                p
            })
            .collect();
        Maintainers {
            dir: dir.to_path_buf(),
            key_files,
            keys: (0..5)
                .map(commons_signaling::spec::regtest_maintainer_key)
                .collect(),
        }
    }

    /// Every maintainer's signature over the spec file `spec` (`spec sign`, with
    /// `--previous` when it is a later version): the signature files, named after `tag`.
    pub fn sign(&self, spec: &Path, previous: Option<&Path>, tag: &str) -> Vec<PathBuf> {
        self.key_files
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let sig = self.dir.join(format!("{tag}-{i}.sig"));
                let mut args = vec!["spec", "sign", path(spec)];
                if let Some(previous) = previous {
                    args.extend(["--previous", path(previous)]);
                }
                args.extend(["--key", path(key), "--out", path(&sig)]);
                cli_succeeds(&args);
                sig
            })
            .collect()
    }

    /// Version 1: `spec` written to `v1.toml`, signed by all five and bundled into `out`
    /// (`spec bundle`); its spec id, the anchor.
    pub fn first_bundle(&self, spec: &NetworkSpec, out: &Path) -> String {
        let toml = self.dir.join("v1.toml");
        std::fs::write(&toml, spec.to_toml()).unwrap();
        let sigs = self.sign(&toml, None, "v1");
        let mut args = vec!["spec", "bundle", path(&toml)];
        args.extend(sigs.iter().map(|p| path(p)));
        args.extend(["--out", path(out)]);
        cli_succeeds(&args);
        let anchor = cli_succeeds(&["spec", "id", path(&toml)])
            .trim()
            .to_string();
        assert_eq!(anchor, spec.spec_id().to_string());
        anchor
    }

    /// The draft of the next version after `bundle` (`spec next`), written to `draft`.
    pub fn draft_next(&self, bundle: &Path, draft: &Path) {
        cli_succeeds(&["spec", "next", path(bundle), "--out", path(draft)]);
    }

    /// The draft `draft` signed by all five maintainers of the version before it, in
    /// `previous`, and bundled onto it into `out`; the new version.
    pub fn next_bundle(
        &self,
        draft: &Path,
        previous: &Path,
        out: &Path,
        anchor: &str,
    ) -> NetworkSpec {
        let tag = draft.file_stem().and_then(|s| s.to_str()).unwrap_or("next");
        let sigs = self.sign(draft, Some(previous), tag);
        bundle_onto(draft, &sigs, previous, out, anchor)
    }
}

/// `spec bundle DRAFT SIGS --onto PREVIOUS --out OUT`, checked with `spec verify-bundle`
/// from `anchor`; the new version as `out` holds it.
pub fn bundle_onto(
    draft: &Path,
    sigs: &[PathBuf],
    previous: &Path,
    out: &Path,
    anchor: &str,
) -> NetworkSpec {
    let mut args = vec!["spec", "bundle", path(draft)];
    args.extend(sigs.iter().map(|p| path(p)));
    args.extend(["--onto", path(previous), "--out", path(out)]);
    cli_succeeds(&args);
    cli_succeeds(&["spec", "verify-bundle", path(out), "--anchor", anchor]);
    let bundle = SpecBundle::load(out).unwrap();
    bundle.versions.last().unwrap().spec.clone()
}
