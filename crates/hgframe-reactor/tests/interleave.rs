//! Random commands, cut into frames at random sizes and interleaved at random, give
//! exactly the `runcommand` results of sending them one by one (and, in streaming mode,
//! the same data piece by piece).

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::*;
use hgframe_reactor::{DataMode, ServerAction, ServerConfig, ServerReactor};
use hgframe_wire::{Frame, RequestId};
use proptest::prelude::*;

type Seen = BTreeMap<RequestId, (Bytes, BTreeMap<Bytes, Bytes>, Option<Vec<u8>>)>;

#[derive(Debug, Clone)]
struct Cmd {
    name: String,
    args: Vec<(String, Vec<u8>)>,
    data: Option<Vec<u8>>,
    frame_size: usize,
}

fn frames_of(id: u16, cmd: &Cmd) -> Vec<Frame> {
    let args: Vec<(&str, &[u8])> = cmd
        .args
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    raw_command(id, &cmd.name, &args, cmd.data.as_deref(), cmd.frame_size)
}

/// Feeds the frames (stamped on one client stream) and collects what the server
/// dispatched, data reassembled in streaming mode.
fn serve(frames: Vec<Frame>, mode: DataMode) -> Seen {
    let mut config = ServerConfig::default();
    config.set_data_mode(mode);
    let mut server = ServerReactor::new(config);
    let mut seen = Seen::new();
    for frame in ClientStream::new().stamp(frames) {
        match server.on_frame(frame) {
            ServerAction::RunCommand(c) => {
                let data = if c.data_follows {
                    Some(Vec::new())
                } else {
                    c.data.map(|d| d.to_vec())
                };
                assert!(seen.insert(c.request_id, (c.name, c.args, data)).is_none());
            }
            ServerAction::CommandData {
                request_id, data, ..
            } => {
                seen.get_mut(&request_id)
                    .unwrap()
                    .2
                    .as_mut()
                    .unwrap()
                    .extend_from_slice(&data);
            }
            ServerAction::WantFrame => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(server.buffered_bytes(), 0);
    assert!(matches!(server.on_input_eof(), ServerAction::Noop));
    seen
}

fn cmd_strategy() -> impl Strategy<Value = Cmd> {
    (
        "[a-z]{0,12}",
        proptest::collection::btree_map(
            "[a-z]{1,6}",
            proptest::collection::vec(any::<u8>(), 0..2500),
            0..6,
        ),
        prop_oneof![
            Just(None),
            proptest::collection::vec(any::<u8>(), 0..5000).prop_map(Some),
        ],
        16usize..1500,
    )
        .prop_map(|(name, args, data, frame_size)| Cmd {
            name,
            args: args.into_iter().collect(),
            data,
            frame_size,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn interleaving_changes_nothing(
        cmds in proptest::collection::vec(cmd_strategy(), 1..12),
        order_seed in any::<u64>(),
    ) {
        let per_cmd: Vec<Vec<Frame>> = cmds
            .iter()
            .enumerate()
            .map(|(i, c)| frames_of(1 + 2 * i as u16, c))
            .collect();
        let one_by_one: Vec<Frame> = per_cmd.iter().flatten().cloned().collect();
        // A random merge that keeps each command's frames in order.
        let mut rng = common::Rng::new(order_seed);
        let mut queues: Vec<std::collections::VecDeque<Frame>> =
            per_cmd.into_iter().map(Into::into).collect();
        let mut interleaved = Vec::new();
        while queues.iter().any(|q| !q.is_empty()) {
            let live: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].is_empty()).collect();
            let pick = live[rng.range(0, live.len() - 1)];
            interleaved.push(queues[pick].pop_front().unwrap());
        }
        let reference = serve(one_by_one, DataMode::Buffered);
        prop_assert_eq!(reference.len(), cmds.len());
        prop_assert_eq!(&serve(interleaved.clone(), DataMode::Buffered), &reference);
        prop_assert_eq!(&serve(interleaved, DataMode::Streaming), &reference);
        // And the results are the commands themselves.
        for (i, c) in cmds.iter().enumerate() {
            let (name, args, data) = &reference[&RequestId(1 + 2 * i as u16)];
            prop_assert_eq!(&name[..], c.name.as_bytes());
            prop_assert_eq!(args.len(), c.args.len());
            for (k, v) in &c.args {
                prop_assert_eq!(&args[k.as_bytes()][..], &v[..]);
            }
            prop_assert_eq!(data, &c.data);
        }
    }
}
