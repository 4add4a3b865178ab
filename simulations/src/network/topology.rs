//! Who connects to whom: the edges each node dials at start.

use std::collections::BTreeSet;

use crate::rng::Rng;

/// The shape of the connection graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// A random graph in which every node has `--degree` neighbours (as near as the
    /// configuration model gets: a few nodes may end with one or two fewer).
    Regular,
    /// A ring: node i connects to its `--degree / 2` successors and predecessors.
    Ring,
    /// Everyone connects to everyone (bounded by the 128 connections a node accepts).
    Full,
}

/// The undirected edges `(i, j)` with `i < j` of a graph on `n` nodes.
pub fn edges(
    topology: Topology,
    n: usize,
    degree: usize,
    rng: &mut Rng,
) -> BTreeSet<(usize, usize)> {
    let mut edges = BTreeSet::new();
    let add = |a: usize, b: usize, edges: &mut BTreeSet<(usize, usize)>| {
        if a != b {
            edges.insert((a.min(b), a.max(b)));
        }
    };
    match topology {
        Topology::Full => {
            for i in 0..n {
                for j in i + 1..n {
                    add(i, j, &mut edges);
                }
            }
        }
        Topology::Ring => {
            let reach = (degree / 2).max(1);
            for i in 0..n {
                for k in 1..=reach {
                    add(i, (i + k) % n, &mut edges);
                }
            }
        }
        Topology::Regular => {
            // Configuration model: `degree` stubs per node, shuffled and paired; self-loops
            // and repeated pairs are dropped, which costs a handful of edges at most.
            let mut stubs: Vec<usize> = (0..n)
                .flat_map(|i| std::iter::repeat_n(i, degree))
                .collect();
            for i in (1..stubs.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                stubs.swap(i, j);
            }
            for pair in stubs.chunks_exact(2) {
                add(pair[0], pair[1], &mut edges);
            }
            // A random graph of degree >= 3 is connected with high probability, but not
            // surely: join every component to the first so a signal can reach everyone.
            let mut component: Vec<usize> = (0..n).collect();
            fn find(c: &mut [usize], x: usize) -> usize {
                let mut r = x;
                while c[r] != r {
                    r = c[r];
                }
                c[x] = r;
                r
            }
            for &(a, b) in edges.iter() {
                let (ra, rb) = (find(&mut component, a), find(&mut component, b));
                component[ra] = rb;
            }
            for i in 1..n {
                let (r0, ri) = (find(&mut component, 0), find(&mut component, i));
                if r0 != ri {
                    add(0, i, &mut edges);
                    component[ri] = r0;
                }
            }
        }
    }
    edges
}

/// The neighbours of each node.
pub fn neighbours(n: usize, edges: &BTreeSet<(usize, usize)>) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); n];
    for &(a, b) in edges {
        out[a].push(b);
        out[b].push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    fn connected(n: usize, edges: &BTreeSet<(usize, usize)>) -> bool {
        let adj = neighbours(n, edges);
        let mut seen = vec![false; n];
        let mut stack = vec![0];
        seen[0] = true;
        while let Some(x) = stack.pop() {
            for &y in &adj[x] {
                if !seen[y] {
                    seen[y] = true;
                    stack.push(y);
                }
            }
        }
        seen.iter().all(|s| *s)
    }

    #[test]
    fn ring_has_degree_and_is_connected() {
        let e = edges(Topology::Ring, 10, 4, &mut Rng::new(1, Stream::Topology));
        assert_eq!(e.len(), 20);
        assert!(neighbours(10, &e).iter().all(|n| n.len() == 4));
        assert!(connected(10, &e));
    }

    #[test]
    fn regular_is_near_degree_connected_and_seeded() {
        let e = edges(
            Topology::Regular,
            200,
            6,
            &mut Rng::new(1, Stream::Topology),
        );
        let degrees: Vec<usize> = neighbours(200, &e).iter().map(Vec::len).collect();
        assert!(connected(200, &e));
        // Dropped self-loops and repeats cost at most a few edges.
        assert!(e.len() >= 590 && e.len() <= 600, "{}", e.len());
        assert!(degrees.iter().all(|d| (3..=7).contains(d)), "{degrees:?}");
        let again = edges(
            Topology::Regular,
            200,
            6,
            &mut Rng::new(1, Stream::Topology),
        );
        assert_eq!(e, again);
        let other = edges(
            Topology::Regular,
            200,
            6,
            &mut Rng::new(2, Stream::Topology),
        );
        assert_ne!(e, other);
    }

    #[test]
    fn full_has_every_pair() {
        let e = edges(Topology::Full, 6, 0, &mut Rng::new(1, Stream::Topology));
        assert_eq!(e.len(), 15);
    }
}
