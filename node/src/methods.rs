//! The JSON-RPC methods: every `rpc_*` body, the calls they share with the daemon
//! (`cast_signal`, `submit_proposal`) and the [`RpcHandler`] dispatch.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::UNIX_EPOCH;

use commons_aggregator::rules::verify_proposal;
use commons_aggregator::{ProposalOutcome, ProposalState, Reason, units_to_weight};
use commons_p2p::TopicKind;
use commons_rpc::{
    ConflictingSignal, Deployment, DeploymentInfo, EquivocationInfo, Method, NetworkInfo, NodeInfo,
    Observation, PeerInfo, ProposalReceipt, ProposalSummary, PublishReceipt, Release,
    SignalReceipt, Tally, UptimeReport, method,
};
use commons_signaling::messages::MAX_SIGNAL_ATTESTATIONS;
use commons_signaling::{
    BoundedVec, Choice, Hash32, PROTOCOL_VERSION, Proposal, PublicKey, ReleaseBundle, Signal,
    SignalBody, Signed,
};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::watch;

use crate::artifacts::ArtifactStoreError;
use crate::node::{Node, State, VERSION};
use crate::releases::ReleaseHost;
use crate::rpc::{self, Params, RpcError, RpcFuture, RpcHandler};
use crate::store::Batch;

/// How long `waitforsigners` waits when not told, in milliseconds.
const WAIT_DEFAULT_MS: u64 = 30_000;
/// The longest `waitforsigners` waits, in milliseconds: below `commons-cli`'s default read
/// timeout (120 s), so the answer always comes before the client gives up.
const WAIT_MAX_MS: u64 = 60_000;

impl Node {
    async fn rpc_getinfo(&self) -> Result<NodeInfo, RpcError> {
        let (listen, peer_id) = match &self.net {
            Some(net) => (
                net.listen_addrs()
                    .await
                    .unwrap_or_default()
                    .iter()
                    .map(|a| a.to_string())
                    .collect(),
                Some(net.local_peer_id().to_string()),
            ),
            None => (Vec::new(), None),
        };
        // Before the state lock: the check reads the releases through it.
        let binary = self.binary.info(&self.refresh_binary());
        let st = self.state();
        let (nodes, units) = st.agg().population();
        Ok(NodeInfo {
            version: VERSION.to_string(),
            network: NetworkInfo {
                name: self.spec.name.clone(),
                id: self.network_id.to_hex(),
            },
            peer_id,
            public_key: self.me.to_hex(),
            listen,
            epoch: st.agg().epoch(),
            epoch_secs: self.spec.epoch_secs,
            time: self.now(),
            peers: st.peer_count() as u64,
            proposals: st.agg().proposals().len() as u64,
            qualified_nodes: nodes,
            qualified_weight: units_to_weight(units),
            uptime: st.agg().uptime(&self.me).map(uptime_status),
            running_secs: self.started.elapsed().as_secs(),
            binary: Some(binary),
            spec: Some(crate::specinfo::spec_info(st.agg())),
        })
    }

    async fn rpc_getpeers(&self) -> Result<Vec<PeerInfo>, RpcError> {
        let Some(net) = &self.net else {
            return Ok(Vec::new());
        };
        let peers = net.peers().await.map_err(RpcError::internal)?;
        let st = self.state();
        let out = peers
            .iter()
            .map(|p| {
                let key = p.xonly_key.map(PublicKey);
                let observed = key.and_then(|k| st.observed_peer(&k));
                PeerInfo {
                    peer_id: p.peer_id.to_string(),
                    public_key: key.map(|k| k.to_hex()),
                    addrs: p.addrs.iter().map(|a| a.to_string()).collect(),
                    listen_addrs: p.listen_addrs.iter().map(|a| a.to_string()).collect(),
                    observed_ip: p.observed_ip,
                    connected_since: p
                        .connected_since
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                    outbound: p.outbound,
                    agent: p.agent_version.clone(),
                    gossip_score: p.gossip_score,
                    seen_epochs: observed.map_or(0, |o| o.epochs.len() as u64),
                    uptime: key.and_then(|k| st.agg().uptime(&k)).map(uptime_status),
                }
            })
            .collect();
        Ok(out)
    }

    pub(crate) fn state_name(st: &State, id: &Hash32, now: u64) -> &'static str {
        st.agg()
            .state(id, now)
            .map(ProposalState::name)
            .unwrap_or("unknown")
    }

    fn rpc_listproposals(&self) -> Vec<ProposalSummary> {
        let now = self.now();
        let st = self.state();
        st.agg()
            .proposals()
            .into_iter()
            .map(|(id, p)| ProposalSummary {
                id: id.to_hex(),
                tier: p.body.tier,
                title: p.body.title.as_str().to_string(),
                reference: p.body.reference.as_str().to_string(),
                state: Self::state_name(&st, id, now).to_string(),
                lock_start: p.body.lock_start,
                lock_end: p.body.lock_end,
                signatures: p.signatures.len() as u64,
                overridden_at_epoch: st.agg().overridden_at(id),
            })
            .collect()
    }

    fn rpc_getdeploymentinfo(&self) -> DeploymentInfo {
        let now = self.now();
        let st = self.state();
        let (nodes, units) = st.agg().population();
        let proposals = st
            .agg()
            .proposals()
            .into_iter()
            .filter_map(|(id, p)| {
                let tally = st.agg().tally(id)?;
                let state = st.agg().state(id, now)?;
                let (start, end) = (p.body.lock_start, p.body.lock_end);
                let (next_state, next_state_at) =
                    match next_change(&self.spec, state, start, end, now) {
                        Some((next, at)) => (Some(next.name().to_string()), Some(at)),
                        None => (None, None),
                    };
                Some(Deployment {
                    id: id.to_hex(),
                    tier: p.body.tier,
                    tier_name: self
                        .spec
                        .tier(p.body.tier)
                        .map_or_else(String::new, |t| t.name.clone()),
                    title: p.body.title.as_str().to_string(),
                    state: state.name().to_string(),
                    lock_start: start,
                    lock_end: end,
                    lock_secs_left: end.saturating_sub(now),
                    next_state,
                    next_state_at,
                    override_weight_share: tally.override_weight_share,
                    override_node_share: tally.override_node_share,
                    required_weight_share: tally.required_weight_share,
                    required_node_share: tally.required_node_share,
                    override_met: tally.override_met,
                    overridden_at_epoch: st.agg().overridden_at(id),
                    signers: tally.signers,
                })
            })
            .collect();
        DeploymentInfo {
            epoch: st.agg().epoch(),
            time: now,
            qualified_nodes: nodes,
            qualified_weight: units_to_weight(units),
            proposals,
        }
    }

    fn rpc_help(params: &Params) -> Result<String, RpcError> {
        params.only(&["method"])?;
        let Some(name) = params.optional_str("method", 0)? else {
            return Ok(method::overview());
        };
        method::help(name).map(|h| h.text()).ok_or_else(|| {
            RpcError::invalid_params(format!("unknown method {name:?}; `help` lists them all"))
        })
    }

    pub(crate) fn parse_id(params: &Params, name: &str) -> Result<Hash32, RpcError> {
        let text = params.required_str(name, 0)?;
        Hash32::from_str(text).map_err(|_| {
            RpcError::invalid_params(format!("`{name}` must be 64 hex characters, not {text:?}"))
        })
    }

    fn rpc_gettally(&self, params: &Params) -> Result<Tally, RpcError> {
        params.only(&["id"])?;
        self.tally_of(&Self::parse_id(params, "id")?)
    }

    /// `waitforsigners {id, signers, timeout?}`: the tally once it counts `signers`, or at
    /// the timeout. Each change the node makes wakes it to look again; it holds no lock
    /// while it waits.
    async fn rpc_waitforsigners(&self, params: &Params) -> Result<Tally, RpcError> {
        params.only(&["id", "signers", "timeout"])?;
        let id = Self::parse_id(params, "id")?;
        let whole = |name: &str, position: usize| -> Result<Option<u64>, RpcError> {
            params
                .get(name, position)
                .map(|v| {
                    v.as_u64().ok_or_else(|| {
                        RpcError::invalid_params(format!(
                            "`{name}` must be a whole number, not {v}"
                        ))
                    })
                })
                .transpose()
        };
        let signers = whole("signers", 1)?
            .ok_or_else(|| RpcError::invalid_params("missing parameter `signers`"))?;
        let timeout = whole("timeout", 2)?.unwrap_or(WAIT_DEFAULT_MS);
        if timeout > WAIT_MAX_MS {
            return Err(RpcError::invalid_params(format!(
                "`timeout` is at most {WAIT_MAX_MS} ms, not {timeout}"
            )));
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(timeout);
        loop {
            // Registered before the tally is read, so a change between the two still wakes it.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let tally = self.tally_of(&id)?;
            if tally.signers >= signers || tokio::time::Instant::now() >= deadline {
                return Ok(tally);
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// The tally of `id` as `gettally` answers it.
    fn tally_of(&self, id: &Hash32) -> Result<Tally, RpcError> {
        let id = *id;
        let now = self.now();
        let st = self.state();
        let tally = st
            .agg()
            .tally(&id)
            .ok_or_else(|| RpcError::new(rpc::NOT_FOUND, format!("unknown proposal {id}")))?;
        Ok(Tally::from_aggregator(
            &tally,
            Self::state_name(&st, &id, now),
        ))
    }

    fn rpc_listequivocations(&self, params: &Params) -> Result<Vec<EquivocationInfo>, RpcError> {
        params.only(&["proposal"])?;
        let proposal = match params.optional_str("proposal", 0)? {
            Some(_) => Some(Self::parse_id(params, "proposal")?),
            None => None,
        };
        let st = self.state();
        if let Some(id) = &proposal
            && st.agg().proposal(id).is_none()
        {
            return Err(RpcError::new(
                rpc::NOT_FOUND,
                format!("unknown proposal {id}"),
            ));
        }
        Ok(st
            .agg()
            .evidence(proposal.as_ref())
            .into_iter()
            .map(|e| EquivocationInfo {
                id: e.id(&self.network_id).to_hex(),
                proposal: e.proposal().to_hex(),
                signer: e.signer().to_hex(),
                sequence: e.sequence(),
                signals: [&e.first, &e.second]
                    .into_iter()
                    .map(|s| ConflictingSignal {
                        choice: s.body.choice.name().to_string(),
                        time: s.body.time,
                        attestations: s.body.attestations.len() as u64,
                        signature: hex::encode(s.signature.0),
                    })
                    .collect(),
                evidence: hex::encode(e.encode()),
            })
            .collect())
    }

    fn rpc_getuptime(&self, params: &Params) -> Result<UptimeReport, RpcError> {
        params.only(&["key"])?;
        let key = match params.optional_str("key", 0)? {
            Some(text) => PublicKey::from_str(text)
                .map_err(|e| RpcError::invalid_params(format!("`key`: {e}")))?,
            None => self.me,
        };
        let st = self.state();
        Ok(UptimeReport {
            key: key.to_hex(),
            epoch: st.agg().epoch(),
            min_uptime_epochs: self.spec.min_uptime_epochs,
            status: st.agg().uptime(&key).map(uptime_status),
            observed_by_this_node: st.observed_peer(&key).map(|o| Observation {
                ip: o.ip,
                seen_epochs: o.epochs.len() as u64,
            }),
        })
    }

    /// The error of an RPC call that would write while the store cannot: nothing was done.
    fn unwritable(&self, e: &crate::store::StoreError) -> RpcError {
        match e {
            // Degraded already: logged when it began.
            crate::store::StoreError::Degraded { .. } => {
                tracing::debug!(error = %e, "RPC write refused: the store cannot write")
            }
            _ => tracing::error!(
                error = %e,
                path = %self.store.path().display(),
                "store write failed; the node refuses new messages until the disk takes writes again (free space on it), and keeps what it could not write to write it then"
            ),
        }
        RpcError::new(
            rpc::UNAVAILABLE,
            format!(
                "the store cannot write, so nothing was done: {e}; free space on the disk of {} (the node writes again by itself within seconds of 64 MiB being free), then retry",
                self.store.path().display()
            ),
        )
    }

    /// The error of `signal` while the signing guard is armed.
    fn waiting_for_catch_up(&self) -> RpcError {
        let peers = self.state().peer_count();
        let why = "this node's key is older than its database (the data directory was lost or replaced), so it may have signed before with sequence numbers it no longer holds, and a second signal with one of them would be proven equivocation that excludes it";
        let what = if peers == 0 {
            "no peer is connected: connect it to the network (--bootstrap) and retry, or, if this key never signed on any network node, restart with --sign-without-catch-up".to_string()
        } else {
            format!("catching up with {peers} connected peer(s); retry in a few seconds")
        };
        RpcError::new(
            rpc::UNAVAILABLE,
            format!("waiting for a catch-up with peers before signing: {why}; {what}"),
        )
    }

    /// Signs, stores, applies and publishes this node's signal on a proposal.
    ///
    /// The sequence number is one above the highest this node knows of its own on the
    /// proposal: the one it persisted and the one it holds (possibly a peer's copy that came
    /// back through catch-up). A node whose key is older than its database has the signing
    /// guard armed and refuses (`UNAVAILABLE`) until a catch-up with a peer completed, so that
    /// it never signs a second signal with a sequence number it used before. The signal is
    /// written before it is applied, so a store that cannot write leaves no trace of it.
    pub async fn cast_signal(
        &self,
        proposal: Hash32,
        choice: Choice,
    ) -> Result<(Signal, bool), RpcError> {
        let now = self.now();
        if !self.history_verified() {
            return Err(self.waiting_for_catch_up());
        }
        let attestations =
            BoundedVec::truncating(self.signal_attestations(MAX_SIGNAL_ATTESTATIONS));
        let signal = {
            let mut st = self.state();
            if st.agg().proposal(&proposal).is_none() {
                return Err(RpcError::new(
                    rpc::NOT_FOUND,
                    format!("unknown proposal {proposal}"),
                ));
            }
            self.store_writable().map_err(|e| self.unwritable(&e))?;
            // The sequence is persisted separately from the signal so that it never goes
            // back, even if the stored signal is replaced by a peer's view of it.
            let stored = self.store.sequence(&proposal).map_err(RpcError::internal)?;
            let held = st
                .agg()
                .signal(&proposal, &self.me)
                .map(|s| s.body.sequence);
            let sequence = stored.max(held).map_or(1, |s| s + 1);
            let body = SignalBody {
                version: PROTOCOL_VERSION,
                proposal,
                choice,
                sequence,
                time: now,
                signer: self.me,
                attestations,
            };
            let signal = Signed::sign(body, &self.key, &self.network_id);
            st.agg()
                .precheck_signal(&signal, now)
                .map_err(|e| RpcError::new(rpc::REJECTED, format!("signal refused: {e}")))?;
            let mut batch = Batch::new();
            batch.put_signal(&signal);
            batch.put_sequence(&proposal, sequence);
            self.store
                .write_unapplied(batch)
                .map_err(|e| self.unwritable(&e))?;
            // Checked above under the same lock, so this applies; a refusal here would leave
            // a stored signal that the next start replays through the same checks.
            st.agg_mut()
                .apply_signal(signal.clone(), now)
                .map_err(|e| RpcError::new(rpc::REJECTED, format!("signal refused: {e}")))?;
            signal
        };
        self.changed.notify_waiters();
        let published = self.publish(TopicKind::Signals, signal.encode()).await;
        tracing::info!(proposal = %proposal, choice = %choice, sequence = signal.body.sequence, published, "signal cast");
        Ok((signal, published))
    }

    async fn rpc_signal(&self, params: &Params) -> Result<SignalReceipt, RpcError> {
        params.only(&["proposal", "choice"])?;
        let proposal = Self::parse_id(params, "proposal")?;
        let choice_text = params.required_str("choice", 1)?;
        let choice = Choice::from_str(choice_text).map_err(RpcError::invalid_params)?;
        let (signal, published) = self.cast_signal(proposal, choice).await?;
        Ok(SignalReceipt {
            proposal: proposal.to_hex(),
            choice: choice.name().to_string(),
            sequence: signal.body.sequence,
            time: signal.body.time,
            attestations: signal.body.attestations.len() as u64,
            published,
        })
    }

    /// Verifies, stores and publishes a signed proposal given as canonical CBOR.
    pub async fn submit_proposal(&self, bytes: &[u8]) -> Result<(Hash32, bool, bool), RpcError> {
        let proposal = Proposal::decode(bytes)
            .map_err(|e| RpcError::invalid_params(format!("not a signed proposal: {e}")))?;
        let id = proposal.id(&self.network_id);
        // Judged by the keys of the spec version in force when its lock starts.
        let spec = self.state().agg().spec_for_proposal(&proposal).clone();
        let copy = proposal.clone();
        let verified = tokio::task::spawn_blocking(move || {
            verify_proposal(&copy, &spec, &spec.network_id()).map(|_| ())
        })
        .await
        .map_err(RpcError::internal)?;
        verified.map_err(|e| RpcError::new(rpc::REJECTED, format!("proposal refused: {e}")))?;
        let new = {
            let mut st = self.state();
            self.store_writable().map_err(|e| self.unwritable(&e))?;
            match st.agg_mut().add_proposal(proposal.clone()) {
                Ok(ProposalOutcome::New) => {
                    let mut batch = Batch::new();
                    batch.put_proposal(&id, &proposal);
                    // Applied already: a failed write waits in the store for the disk.
                    self.store.write(batch).map_err(|e| self.unwritable(&e))?;
                    true
                }
                Ok(ProposalOutcome::Duplicate) => false,
                Err(e) => {
                    return Err(RpcError::new(
                        rpc::REJECTED,
                        format!("proposal refused: {e}"),
                    ));
                }
            }
        };
        // Published again even when already held: the submitter wants it out, and peers
        // drop a duplicate cheaply.
        let published = self.publish(TopicKind::Proposals, bytes.to_vec()).await;
        if new {
            tracing::info!(proposal = %id, title = %proposal.body.title, published, "proposal submitted");
        }
        Ok((id, new, published))
    }

    async fn rpc_submitproposal(&self, params: &Params) -> Result<ProposalReceipt, RpcError> {
        params.only(&["hex"])?;
        let text = params.required_str("hex", 0)?;
        let bytes = hex::decode(text.trim())
            .map_err(|e| RpcError::invalid_params(format!("`hex` is not hex: {e}")))?;
        let (id, new, published) = self.submit_proposal(&bytes).await?;
        Ok(ProposalReceipt {
            id: id.to_hex(),
            new,
            published,
        })
    }

    /// `listreleases`.
    pub(crate) fn rpc_listreleases(&self) -> Vec<Release> {
        self.held_releases()
            .iter()
            .map(|(id, b)| self.release_answer(id, b))
            .collect()
    }

    /// `getrelease {id}`.
    pub(crate) fn rpc_getrelease(&self, params: &Params) -> Result<Release, RpcError> {
        params.only(&["id"])?;
        let id = Self::parse_id(params, "id")?;
        let bundle = self.state().release(&id).cloned().ok_or_else(|| {
            RpcError::new(
                rpc::NOT_FOUND,
                format!("no release {} is known", id.to_hex()),
            )
        })?;
        Ok(Release {
            bundle: Some(hex::encode(bundle.encode())),
            ..self.release_answer(&id, &bundle)
        })
    }

    /// `publishrelease {bundle, artifacts}`: verifies a bundle and every artifact in a local
    /// directory, stores them and gossips the bundle. Nothing is stored unless all of it
    /// checks out.
    pub(crate) async fn rpc_publishrelease(
        &self,
        params: &Params,
    ) -> Result<PublishReceipt, RpcError> {
        params.only(&["bundle", "artifacts"])?;
        let text = params.required_str("bundle", 0)?;
        let dir = PathBuf::from(params.required_str("artifacts", 1)?);
        let bytes = hex::decode(text.trim())
            .map_err(|e| RpcError::invalid_params(format!("`bundle` is not hex: {e}")))?;
        let bundle = ReleaseBundle::decode(&bytes).map_err(|e| {
            self.release_metrics()
                .rejected(Reason::of_decode_error(&e).label());
            RpcError::invalid_params(format!("not a release bundle: {e}"))
        })?;
        if !dir.is_absolute() {
            return Err(RpcError::invalid_params(format!(
                "`artifacts` must be an absolute path, not {}",
                dir.display()
            )));
        }
        if !dir.is_dir() {
            return Err(RpcError::invalid_params(format!(
                "{}: not a directory the node can read",
                dir.display()
            )));
        }
        let store = self
            .artifact_store()
            .cloned()
            .ok_or_else(|| RpcError::new(rpc::REJECTED, "this node keeps no release artifacts"))?;
        let id = bundle.id(self.network_id());
        let verified = self
            .verify_release_off_reactor(&bundle)
            .await
            .map_err(|refusal| {
                self.release_metrics().rejected(refusal.reason.label());
                RpcError::new(
                    rpc::REJECTED,
                    format!("release refused: {}", refusal.detail),
                )
            })?;
        for artifact in bundle.body.artifacts.iter() {
            let source = dir.join(artifact.name.as_str());
            let (store, artifact) = (store.clone(), artifact.clone());
            let imported = tokio::task::spawn_blocking(move || store.import(&artifact, &source))
                .await
                .map_err(RpcError::internal)?;
            match imported {
                Ok(()) => {}
                Err(ArtifactStoreError::Mismatch(e)) => {
                    self.release_metrics()
                        .rejected(Reason::ArtifactMismatch.label());
                    return Err(RpcError::new(
                        rpc::REJECTED,
                        format!("release refused: artifact {e}"),
                    ));
                }
                Err(e) => return Err(RpcError::invalid_params(e.to_string())),
            }
        }
        let new = match verified {
            None => false,
            Some(verified) => self.accept_release(verified).map_err(|reason| {
                self.release_metrics().rejected(reason.label());
                RpcError::new(rpc::REJECTED, format!("release refused: {reason}"))
            })?,
        };
        self.link_named(&bundle);
        // Its artifacts are all verified now: this may be the release of the running binary.
        self.refresh_binary();
        let published = self.publish(TopicKind::Releases, bytes).await;
        tracing::info!(release = %bundle.body.release, channel = %bundle.body.channel, new, published, "release published");
        Ok(PublishReceipt {
            id: id.to_hex(),
            channel: bundle.body.channel.as_str().to_string(),
            version: bundle.body.release.to_string(),
            new,
            published,
            artifacts: bundle.body.artifacts.len() as u64,
        })
    }
}

impl RpcHandler for Node {
    fn call<'a>(&'a self, method: &'a str, params: Params) -> RpcFuture<'a> {
        Box::pin(async move {
            match method {
                method::GetInfo::NAME => {
                    params.only(&[])?;
                    answer::<method::GetInfo>(self.rpc_getinfo().await)
                }
                method::GetPeers::NAME => {
                    params.only(&[])?;
                    answer::<method::GetPeers>(self.rpc_getpeers().await)
                }
                method::ListProposals::NAME => {
                    params.only(&[])?;
                    answer::<method::ListProposals>(Ok(self.rpc_listproposals()))
                }
                method::GetDeploymentInfo::NAME => {
                    params.only(&[])?;
                    answer::<method::GetDeploymentInfo>(Ok(self.rpc_getdeploymentinfo()))
                }
                method::Help::NAME => answer::<method::Help>(Self::rpc_help(&params)),
                method::Stop::NAME => Err(RpcError::new(
                    rpc::REJECTED,
                    "this node runs embedded, without a daemon that `stop` could end",
                )),
                method::GetTally::NAME => answer::<method::GetTally>(self.rpc_gettally(&params)),
                method::WaitForSigners::NAME => {
                    answer::<method::WaitForSigners>(self.rpc_waitforsigners(&params).await)
                }
                method::GetUptime::NAME => answer::<method::GetUptime>(self.rpc_getuptime(&params)),
                method::ExportProposal::NAME => {
                    answer::<method::ExportProposal>(self.rpc_exportproposal(&params))
                }
                method::ListEquivocations::NAME => {
                    answer::<method::ListEquivocations>(self.rpc_listequivocations(&params))
                }
                method::CastSignal::NAME => {
                    answer::<method::CastSignal>(self.rpc_signal(&params).await)
                }
                method::SubmitProposal::NAME => {
                    answer::<method::SubmitProposal>(self.rpc_submitproposal(&params).await)
                }
                method::ListReleases::NAME => {
                    params.only(&[])?;
                    answer::<method::ListReleases>(Ok(self.rpc_listreleases()))
                }
                method::GetRelease::NAME => {
                    answer::<method::GetRelease>(self.rpc_getrelease(&params))
                }
                method::PublishRelease::NAME => {
                    answer::<method::PublishRelease>(self.rpc_publishrelease(&params).await)
                }
                _ => {
                    let (last, rest) = method::NAMES.split_last().expect("methods exist");
                    Err(RpcError::new(
                        rpc::METHOD_NOT_FOUND,
                        format!(
                            "unknown method {method:?}: use {} or {last} (`help METHOD` describes one)",
                            rest.join(", ")
                        ),
                    ))
                }
            }
        })
    }
}

/// A method's answer as the JSON `result` the server sends.
fn answer<M: Method>(result: Result<M::Response, RpcError>) -> Result<Value, RpcError> {
    result.map(|response| commons_rpc::response_json::<M>(&response))
}

/// The aggregator's uptime status as the RPC answers carry it.
fn uptime_status(status: commons_aggregator::UptimeStatus) -> commons_rpc::UptimeStatus {
    commons_rpc::UptimeStatus {
        ip: status.ip,
        uptime_epochs: status.uptime_epochs,
        attester_netgroups: status.attester_netgroups,
        qualified: status.qualified,
        counted: status.counted,
        netgroup: status.netgroup.map(|n| n.to_string()),
    }
}

/// The next state a proposal in `state` reaches on the clock alone, and when: the lock's
/// start, its end, then the end of each activation stage. `None` when no later state
/// follows (overridden, or the mainnet default). An override can still come first; the
/// answer says what happens if none does.
fn next_change(
    spec: &commons_signaling::NetworkSpec,
    state: ProposalState,
    lock_start: u64,
    lock_end: u64,
    now: u64,
) -> Option<(ProposalState, u64)> {
    if matches!(
        state,
        ProposalState::Overridden | ProposalState::MainnetDefault
    ) {
        return None;
    }
    let a = &spec.activation;
    let mut boundaries = vec![lock_start, lock_end];
    let mut at = lock_end;
    for secs in [
        a.ready_secs,
        a.testnet_secs,
        a.signet_secs,
        a.mainnet_opt_in_secs,
    ] {
        at = at.saturating_add(secs);
        boundaries.push(at);
    }
    boundaries.into_iter().filter(|&t| t > now).find_map(|t| {
        let next = if t < lock_end {
            ProposalState::Locked
        } else {
            ProposalState::after_lock(&spec.activation, t - lock_end)
        };
        (next != state).then_some((next, t))
    })
}

/// The RPC of a running daemon: the node's methods, and `stop`, which asks the daemon to
/// shut down the way SIGTERM does (the daemon's owner waits for it with
/// [`Daemon::stop_requested`](crate::daemon::Daemon::stop_requested)).
pub(crate) struct DaemonRpc {
    node: Arc<Node>,
    stop: Arc<watch::Sender<bool>>,
}

impl DaemonRpc {
    /// The RPC of `node`, whose `stop` turns `stop` true.
    pub(crate) fn new(node: Arc<Node>, stop: Arc<watch::Sender<bool>>) -> Self {
        DaemonRpc { node, stop }
    }
}

impl RpcHandler for DaemonRpc {
    fn call<'a>(&'a self, method: &'a str, params: Params) -> RpcFuture<'a> {
        if method != method::Stop::NAME {
            return self.node.call(method, params);
        }
        Box::pin(async move {
            params.only(&[])?;
            // The answer goes out while the daemon shuts down: the server stops accepting
            // new connections, but one in progress is answered.
            self.stop.send_replace(true);
            answer::<method::Stop>(Ok("commonsd stopping".to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_change_walks_the_lock_and_the_stages() {
        let mut spec = commons_signaling::NetworkSpec::regtest();
        spec.activation.ready_secs = 10;
        spec.activation.testnet_secs = 0;
        spec.activation.signet_secs = 20;
        spec.activation.mainnet_opt_in_secs = 30;
        let next = |state, now| next_change(&spec, state, 100, 200, now);
        assert_eq!(
            next(ProposalState::Pending, 50),
            Some((ProposalState::Locked, 100))
        );
        assert_eq!(
            next(ProposalState::Locked, 150),
            Some((ProposalState::Ready, 200))
        );
        // A stage of no length is skipped.
        assert_eq!(
            next(ProposalState::Ready, 205),
            Some((ProposalState::Signet, 210))
        );
        assert_eq!(
            next(ProposalState::Signet, 215),
            Some((ProposalState::MainnetOptIn, 230))
        );
        assert_eq!(
            next(ProposalState::MainnetOptIn, 230),
            Some((ProposalState::MainnetDefault, 260))
        );
        assert_eq!(next(ProposalState::MainnetDefault, 300), None);
        assert_eq!(next(ProposalState::Overridden, 150), None);
    }
}
