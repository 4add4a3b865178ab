//! What `getinfo`, the metrics and the log say of the spec versions: the version in force,
//! the later ones held, the rotation proposals known, and a warning when one of them names a
//! version this node does not hold (the node cannot follow the network there without it).

use commons_aggregator::{Aggregator, Rotation, RotationState};
use commons_rpc::{RotationInfo, SpecInfo, SpecVersion};

/// The `spec` part of `getinfo`.
pub(crate) fn spec_info(agg: &Aggregator) -> SpecInfo {
    let rotations = agg.rotations();
    let since_epoch = agg.spec_versions().last().map_or(0, |(since, _)| since);
    let spec = agg.spec();
    SpecInfo {
        version: spec.version(),
        spec_id: spec.spec_id().to_hex(),
        since_epoch,
        staged: agg
            .staged_specs()
            .iter()
            .map(|s| SpecVersion {
                version: s.version(),
                spec_id: s.spec_id().to_hex(),
            })
            .collect(),
        rotations: rotations
            .iter()
            .map(|r| RotationInfo {
                proposal: r.proposal.to_hex(),
                spec_id: r.spec_id.to_hex(),
                version: r.version,
                activation_epoch: r.activation_epoch,
                state: r.state.name().to_string(),
            })
            .collect(),
        warning: missing_version_warning(spec.version(), &rotations),
    }
}

/// The rotations that passed or are pending and name a version this node does not hold.
pub(crate) fn missing(rotations: &[Rotation]) -> impl Iterator<Item = &Rotation> {
    rotations.iter().filter(|r| r.names_missing_version())
}

/// What an operator must do when a rotation names a version this node does not hold, with
/// `in_force` the version it runs; `None` when none does.
pub(crate) fn missing_version_warning(in_force: u32, rotations: &[Rotation]) -> Option<String> {
    let named: Vec<String> = missing(rotations)
        .map(|r| {
            let when = match r.state {
                RotationState::Pending => "activates at epoch",
                _ => "passed; it activated at epoch",
            };
            format!(
                "proposal {} names spec id {} ({when} {})",
                r.proposal.to_hex(),
                r.spec_id.to_hex(),
                r.activation_epoch
            )
        })
        .collect();
    if named.is_empty() {
        return None;
    }
    Some(format!(
        "a rotation names a spec version this node does not hold: {}. Get the spec bundle that \
         holds it from the maintainers (`commons-cli spec verify-bundle BUNDLE --anchor ANCHOR` \
         checks it) and restart commonsd with `--network BUNDLE`; until then this node stays on \
         version {in_force} and refuses what the new keys sign",
        named.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use commons_signaling::Hash32;

    fn rotation(byte: u8, version: Option<u32>, state: RotationState) -> Rotation {
        Rotation {
            proposal: Hash32([byte; 32]),
            spec_id: Hash32([byte + 1; 32]),
            version,
            activation_epoch: 40 + u64::from(byte),
            state,
        }
    }

    #[test]
    fn the_warning_names_each_rotation_of_a_version_not_held_and_what_to_do() {
        use RotationState::*;
        let held = [
            rotation(1, Some(2), Activated),
            rotation(2, Some(3), Pending),
            rotation(3, None, Overridden),
        ];
        assert_eq!(missing_version_warning(2, &held), None);
        let not_held = [rotation(4, None, Pending), rotation(6, None, Stalled)];
        let text = missing_version_warning(1, &not_held).unwrap();
        for wanted in [
            &format!(
                "proposal {} names spec id {}",
                "04".repeat(32),
                "05".repeat(32)
            ),
            "(activates at epoch 44)",
            &format!(
                "spec id {} (passed; it activated at epoch 46)",
                "07".repeat(32)
            ),
            "--network BUNDLE",
            "stays on version 1",
        ] {
            assert!(text.contains(wanted), "{wanted:?} not in {text}");
        }
    }
}
